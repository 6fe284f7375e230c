"""`make demo`: onboard and sync a demo source against the embedded emulator."""
