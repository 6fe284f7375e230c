"""A production-shaped Splendor stack on one machine (`make stack`).

PostgreSQL, a Prefect server on it, the Splendor emulator, the deployments of prefect.yaml, the automations
of deployments/automations.yaml and several process workers with separate homes. See docs/deployments.md.
Tests drive it through tests/stack_harness.py.
"""

from stack.lifecycle import POOL, Stack, StackConfig, StackError

__all__ = ["POOL", "Stack", "StackConfig", "StackError"]
