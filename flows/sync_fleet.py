"""sync_fleet: sync every source of a connectors file concurrently, in one flow run or in shards.

Each source runs start → poll → enqueue inside the fleet's flow run (see splendor_flows/fleet/source.py for
why not one task run per step or per source), with the same remote reads and the same checkpoint keys
as `sync_source`, so a source that fails here can be resumed by
`sync_source(source_key, sync_id=<this run's sync_id>)`.

With `shards` > 1 the run is a parent: it starts one child run of `shard_deployment` per shard, which
any worker of the pool can take (splendor_flows/fleet/shards.py), and summarises them.

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Literal

from prefect import flow

from splendor_flows.engine.polling import PollOptions
from splendor_flows.fleet.run import (
    DEFAULT_CONCURRENCY_LIMIT,
    DEFAULT_SHARD_DEPLOYMENT,
    FleetOptions,
    FleetSummary,
    run_fleet,
)
from splendor_flows.fleet.shards import run_sharded
from splendor_flows.orchestration.failure_masking import masks_failures


@flow(name="sync-fleet", log_prints=False)
@masks_failures
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
    concurrency_limit: str | None = DEFAULT_CONCURRENCY_LIMIT,
    shards: int = 1,
    shard: int | None = None,
    shard_deployment: str = DEFAULT_SHARD_DEPLOYMENT,
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
        concurrency_limit: Prefect global concurrency limit shared by every fleet and shard of the
            tenant (`{tenant}` is replaced by the tenant id); when it exists, this run holds
            min(max_concurrency, limit // shards) slots for its duration. Empty: no shared limit.
        shards: split the sources into this many child runs, which any worker of the pool may take.
            1 syncs every source in this run.
        shard: set by the parent run on its children (0 to shards - 1); leave empty.
        shard_deployment: the deployment (`flow/deployment`) the parent starts its children on.
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
        shards=shards,
        shard=shard,
        shard_deployment=shard_deployment,
    )
    if options.is_parent:
        return await run_sharded(options)
    return await run_fleet(options)
