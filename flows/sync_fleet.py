"""sync_fleet: sync every source of a connectors file concurrently, in one flow run.

Each source is one task run that does start → poll → enqueue itself (see tasks/fleet_source.py for why
not one task per step), with the same remote reads and the same checkpoint keys as `sync_source`, so a
source that fails here can be resumed by `sync_source(source_key, sync_id=<this run's sync_id>)`.

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Literal

from prefect import flow

from splendor_flows.engine.polling import PollOptions
from splendor_flows.flows.fleet import FleetOptions, FleetSummary, run_fleet


@flow(name="sync-fleet", log_prints=False)
async def sync_fleet(
    connectors_file: str = "deployments/connectors.yaml",
    only: list[str] | None = None,
    max_concurrency: int = 50,
    credentials_block: str | None = None,
    sync_id: str | None = None,
    trigger: Literal["manual", "scheduled", "backfill"] = "scheduled",
    max_sync_attempts: int = 2,
    poll: PollOptions = PollOptions(),
    wait_for_ingest: bool = False,
    concurrency_limit: str | None = "splendor-api",
) -> FleetSummary:
    """Sync the sources of a connectors file; one source failing does not stop the others.

    Args:
        connectors_file: path of the connectors file (relative to the flow's working directory).
        only: source keys or glob patterns (e.g. `stripe-*`) to sync; empty syncs every source.
        max_concurrency: API requests in flight at once for the whole fleet.
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        sync_id: leave empty for a fresh sync; pass an earlier fleet run's sync_id to resume it.
        trigger: how Splendor records the runs.
        max_sync_attempts: new sync runs a source may start in this flow run when runs fail.
        poll: how to poll runs (cap and deadline); earlier durations of each source refine it.
        wait_for_ingest: also wait until each source's ingestion is `ready`.
        concurrency_limit: Prefect global concurrency limit shared by all fleets of the tenant; when
            it exists, this run holds min(max_concurrency, its limit) slots for its duration.
    """
    options = FleetOptions(
        connectors_file=connectors_file,
        only=only,
        max_concurrency=max_concurrency,
        credentials_block=credentials_block,
        sync_id=sync_id,
        trigger=trigger,
        max_sync_attempts=max_sync_attempts,
        poll=poll,
        wait_for_ingest=wait_for_ingest,
        concurrency_limit=concurrency_limit,
    )
    return await run_fleet(options)
