"""Prefect tasks: one checkpointed, retryable task per pipeline step, each a thin adapter over the engine."""
