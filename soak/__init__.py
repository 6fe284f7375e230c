"""Chaos soak: many pipelines against a faulty, restarting emulator, with flow processes killed mid-run.

`python -m soak` runs it and prints the figures quoted in docs/reliability.md.
"""
