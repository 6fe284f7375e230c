"""The state machines as plain async functions over a client, a clock and a checkpoint store."""
