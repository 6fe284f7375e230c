"""A production-shaped Splendor stack on one machine (`make stack`, or `Stack` in tests).

PostgreSQL, a Prefect server on it, the Splendor emulator, the deployments of prefect.yaml, the automations
of deployments/automations.yaml and several process workers with separate homes. See docs/deployments.md.
"""

from stack.core import POOL, Outage, Stack, StackConfig, StackError

__all__ = ["POOL", "Outage", "Stack", "StackConfig", "StackError"]
