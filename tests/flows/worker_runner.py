"""Run one pipeline in its own process, as a separate worker machine would, and print its outcome.

The caller gives the process its own PREFECT_HOME and result storage, so nothing local is shared
with another worker: only the Prefect API (PREFECT_API_URL) and Splendor (SPLENDOR_API_BASE).
Argument: one JSON object {"flow": "connect"|"sync", "source_key", "sync_id"}. Output: one JSON line
{"state", "message", "summary"} on stdout.
"""

import asyncio
import json
import sys
from typing import Any

from splendor_flows.engine.polling import PollOptions

FAST_POLL = PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=30)


async def run(job: dict[str, Any]) -> dict[str, Any]:
    from splendor_flows.flows.connect_source import connect_source
    from splendor_flows.flows.sync_source import sync_source
    from tests.flows.conftest import stripe_spec

    if job["flow"] == "connect":
        state = await connect_source(
            spec=stripe_spec(job["source_key"]), sync_id=job["sync_id"], poll=FAST_POLL, return_state=True
        )
    else:
        state = await sync_source(
            source_key=job["source_key"], sync_id=job["sync_id"], poll=FAST_POLL, return_state=True
        )
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, BaseException):
        return {"state": state.type.value, "message": str(result), "summary": None}
    summary = result.model_dump(mode="json") if state.is_completed() else None
    message = state.message
    return {"state": state.type.value, "message": message, "summary": summary}


if __name__ == "__main__":
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    # The heartbeat thread only slows a short run down; nothing watches it here.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        outcome = asyncio.run(run(json.loads(sys.argv[1])))
    print(json.dumps(outcome))
