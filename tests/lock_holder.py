"""Holds one source's slot (orchestration/source_lock) until killed: the dead holder of the lock tests.

    python -m tests.lock_holder API_BASE SOURCE_KEY

Prints `held` once it holds the slot, then renews its lease until the process is killed. Talks to the
Prefect API of its environment (PREFECT_API_URL).
"""

import asyncio
import sys

from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.source_lock import hold_source


async def main(api_base: str, source_key: str) -> None:
    scope = Scope(api_base=api_base, tenant="acme", source_key=source_key, sync_id="lock-holder")
    async with hold_source(scope, wait_seconds=60):
        print("held", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
