"""Holds one source's slot (orchestration/source_lock): the holders and waiters of the lock tests.

    python -m tests.lock_holder API_BASE SOURCE_KEY            # hold until killed
    python -m tests.lock_holder API_BASE SOURCE_KEY --wait S   # wait up to S seconds, print the wait, let go

The first prints `held` once it holds the slot, then renews its lease until the process is killed; the
second prints `waited <seconds>`. Both talk to the Prefect API of their environment (PREFECT_API_URL, or an
ephemeral server on PREFECT_HOME's database when it is unset).
"""

import asyncio
import sys

from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.source_lock import hold_source


async def main(api_base: str, source_key: str, wait: float | None) -> None:
    scope = Scope(api_base=api_base, tenant="acme", source_key=source_key, sync_id="lock-holder")
    async with hold_source(scope, wait_seconds=60 if wait is None else wait) as waited:
        if wait is not None:
            print(f"waited {waited:.1f}", flush=True)
            return
        print("held", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    args = sys.argv[1:]
    wait = float(args[args.index("--wait") + 1]) if "--wait" in args else None
    asyncio.run(main(args[0], args[1], wait))
