"""A fleet that outgrows one worker: the parent run of a sharded `sync-fleet`.

The parent syncs nothing itself. It starts one child deployment run per shard (any worker of the
pool picks each up), waits for them and summarises them. Each child is an ordinary fleet run over the
sources of its shard (`fleet.shard_of`), with the parent's sync_id as its own,
so its checkpoints and the start records in the Prefect API are the same on every re-run, whatever
the shard count.

Children are created with an idempotency key made of the tenant, the parent's sync_id, the shard and
every parameter the child runs with: a re-run of the parent (Prefect's Retry keeps the flow-run id,
hence the sync_id; or a new run given the same sync_id and parameters) gets the *same* child runs
back instead of new ones; a re-run with other parameters gets new children that run with them.
A child that already Completed is left alone; one that ended Failed, Crashed or Cancelled is set back
to AwaitingRetry, as the UI's Retry does, and resumes from its checkpoints.

A child whose worker dies is marked Crashed by the zombie automation and rescheduled by the resume
automation (deployments/automations.yaml); the parent keeps waiting for such a run for a grace period
instead of counting it lost at once.
"""

import asyncio
import hashlib
import json
import time
from typing import Any
from uuid import UUID

from prefect import State, get_client, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import ArtifactSort
from prefect.deployments import arun_deployment
from prefect.states import AwaitingRetry

from splendor_flows.fleet.run import (
    FleetFailed,
    FleetOptions,
    FleetSummary,
    ShardRun,
    publish,
    shard_of,
)
from splendor_flows.fleet.source import SourceOutcome, SourceStatus
from splendor_flows.orchestration.scope import default_sync_id
from splendor_flows.orchestration.splendor_clients import load_config
from splendor_flows.specs.connectors_file import load_connectors

# One Prefect API read per poll for all children together.
CHILD_POLL_SECONDS = 1.0
# splendor-resume-crashed-flow-runs (deployments/automations.yaml) reschedules runs crashed with this
# exact message at run count 1 or 2: change them together.
ZOMBIE_MESSAGE = "Flow run marked as crashed due to missing heartbeats."
RESUMED_UP_TO_RUN_COUNT = 2
# How long a child crashed by the zombie automation may stay Crashed before the parent stops waiting
# for the resume automation (which acts within seconds when it is installed).
CRASH_GRACE_SECONDS = 120.0
SOURCES_ARTIFACT = "splendor-fleet-sources"


def idempotency_key(options: FleetOptions, tenant: str, sync_id: str, shard: int) -> str:
    """Same fleet, same sync_id, same shard, same parameters → the same child run.

    Every parameter the child is started with is in the digest: a re-run that changes one of them
    (the trigger, the poll, the attempts, waiting for ingestion, the selection, the shard count) gets a
    new child run that runs with the new values. The sources' state is keyed on the fleet's sync_id and
    the source, never the shard, so the new child resumes every source where the old one left it.
    """
    parameters = json.dumps([tenant, child_parameters(options, sync_id, shard)], sort_keys=True)
    digest = hashlib.sha256(parameters.encode()).hexdigest()[:16]
    return f"splendor-sync-fleet/{sync_id}/shard-{shard}-of-{options.shards}/{digest}"


def shard_run_name(sync_id: str, shard: int, shards: int) -> str:
    """The child run's name. splendor-notify-flow-run-failed (deployments/automations.yaml) leaves runs
    named this way out, since their parent reports them: change both together."""
    return f"fleet-{sync_id[:8]}-shard-{shard}-of-{shards}"


def child_parameters(options: FleetOptions, sync_id: str, shard: int) -> dict[str, Any]:
    parameters = options.model_dump(mode="json")
    # The parent's sync_id as it is: a source's checkpoints and start records belong to the fleet's
    # sync_id and the source, so another shard count, or `sync-source` given this sync_id, finds them.
    parameters.update(shard=shard, sync_id=sync_id)
    return parameters


async def start_child(options: FleetOptions, tenant: str, sync_id: str, shard: int) -> tuple[FlowRun, bool]:
    """The shard's child run, created or found again; True when it had ended unsuccessfully and was
    rescheduled."""
    logger = get_run_logger()
    run = await arun_deployment(
        options.shard_deployment,
        parameters=child_parameters(options, sync_id, shard),
        flow_run_name=shard_run_name(sync_id, shard, options.shards),
        idempotency_key=idempotency_key(options, tenant, sync_id, shard),
        timeout=0,
    )
    state = run.state
    if state is None or not state.is_final() or state.is_completed():
        if state is not None and state.is_completed():
            logger.info("Shard %s: run %s already Completed; not run again", shard, run.name)
        return run, False
    async with get_client() as client:
        retry: State[Any] = AwaitingRetry(
            message=f"Rescheduled by the fleet's parent run (sync_id {sync_id})"
        )
        result = await client.set_flow_run_state(run.id, retry)
    logger.info(
        "Shard %s: run %s had ended %s; rescheduled (%s) to resume from its checkpoints",
        shard,
        run.name,
        state.name,
        result.status.value,
    )
    return run, True


def _still_resuming(run: FlowRun, crashed_at: float, now: float) -> bool:
    """A child crashed by the zombie automation that the resume automation should pick up shortly."""
    state = run.state
    return (
        state is not None
        and state.type == StateType.CRASHED
        and state.message == ZOMBIE_MESSAGE
        and run.run_count <= RESUMED_UP_TO_RUN_COUNT
        and now - crashed_at < CRASH_GRACE_SECONDS
    )


async def wait_children(runs: dict[UUID, FlowRun]) -> dict[UUID, FlowRun]:
    logger = get_run_logger()
    pending = dict(runs)
    done: dict[UUID, FlowRun] = {}
    crashed_at: dict[UUID, float] = {}
    while pending:
        async with get_client() as client:
            current = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(pending)))
            )
        now = time.monotonic()
        for run in current:
            state = run.state
            if state is None or not state.is_final():
                crashed_at.pop(run.id, None)
                continue
            if state.type == StateType.CRASHED and _still_resuming(
                run, crashed_at.setdefault(run.id, now), now
            ):
                continue
            pending.pop(run.id)
            done[run.id] = run
            logger.info("Child run %s ended %s", run.name, state.name)
        if pending:
            await asyncio.sleep(CHILD_POLL_SECONDS)
    return done


def _outcome_from_row(row: dict[str, Any]) -> SourceOutcome:
    status = SourceStatus(row.get("status") or SourceStatus.FAILED)
    failed = status != SourceStatus.SUCCEEDED
    note = str(row.get("note") or "")
    return SourceOutcome(
        source_key=str(row["source_key"]),
        status=status,
        step=row.get("failed_step") or None,
        error=note if failed else None,
        run_id=row.get("run_id"),
        run_status=row.get("run_status"),
        records_synced=row.get("records"),
        sync_attempts=int(row.get("attempts") or 0),
        refresh_calls=int(row.get("refresh_calls") or 0),
        resumed=bool(row.get("resumed")),
        ingest_status=row.get("ingest"),
        warnings=[note] if note and not failed else [],
    )


async def child_outcomes(run: FlowRun) -> dict[str, SourceOutcome]:
    """What the child's own table artifact says of each of its sources (its latest, after a resume)."""
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                key=ArtifactFilterKey(any_=[SOURCES_ARTIFACT]),
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    if not artifacts:
        return {}
    data = artifacts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    if not isinstance(rows, list):
        return {}
    outcomes = (_outcome_from_row(row) for row in rows if isinstance(row, dict) and "source_key" in row)
    return {o.source_key: o for o in outcomes}


def _lost(source_key: str, shard: int, run: FlowRun, sync_id: str) -> SourceOutcome:
    state = run.state
    how = (
        f"{state.name}: {state.message}"
        if state is not None and state.message
        else getattr(state, "name", "?")
    )
    return SourceOutcome(
        source_key=source_key,
        status=SourceStatus.FAILED,
        step="shard",
        error=(
            f"[shard] source '{source_key}': shard {shard} (run {run.name}) ended {how} without a result "
            f"for it; re-run the fleet with sync_id={sync_id} to resume the shard"
        ),
    )


async def publish_shards(summary: FleetSummary) -> None:
    title = (
        f"Fleet sync in {len(summary.shard_runs)} shards: {summary.succeeded} of {summary.sources} "
        "sources succeeded"
    )
    rows = "\n".join(
        f"| {s.shard} | `{s.flow_run_name}` | {s.state}{' (rescheduled)' if s.rescheduled else ''} "
        f"| {s.sources} | {s.succeeded} | {s.failed} |"
        for s in summary.shard_runs
    )
    await acreate_markdown_artifact(
        key="splendor-fleet-shards",
        description="The child runs of a sharded fleet sync",
        markdown=f"""# {title}

| shard | child run | state | sources | succeeded | failed |
|---|---|---|---|---|---|
{rows}

Re-run with sync_id `{summary.sync_id}` to resume: children that Completed are not run again.
""",
    )


async def run_sharded(options: FleetOptions) -> FleetSummary:
    """Start a child run per shard, wait for all of them, publish their merged summary."""
    logger = get_run_logger()
    specs = load_connectors(options.connectors_file).select(options.only)
    keys = [spec.source_key for spec in specs]
    # Credentials are read (not used for any call) for the tenant: it names the children's limit.
    tenant = (await load_config(options.credentials_block)).tenant
    sync_id = default_sync_id(options.sync_id)
    assigned: dict[int, list[str]] = {shard: [] for shard in range(options.shards)}
    for key in keys:
        assigned[shard_of(key, options.shards)].append(key)
    logger.info(
        "Fleet of %s source(s) for tenant %s in %s shards (%s), sync_id=%s",
        len(keys),
        tenant,
        options.shards,
        ", ".join(str(len(assigned[s])) for s in range(options.shards)),
        sync_id,
    )
    started = [await start_child(options, tenant, sync_id, shard) for shard in range(options.shards)]
    by_id = {run.id: (shard, rescheduled) for shard, (run, rescheduled) in enumerate(started)}
    ended = await wait_children({run.id: run for run, _ in started})

    outcomes: list[SourceOutcome] = []
    shard_runs: list[ShardRun] = []
    for run_id, (shard, rescheduled) in by_id.items():
        run = ended[run_id]
        reported = await child_outcomes(run)
        mine = [reported.get(key) or _lost(key, shard, run, sync_id) for key in assigned[shard]]
        outcomes.extend(mine)
        failed_here = sum(o.status != SourceStatus.SUCCEEDED for o in mine)
        shard_runs.append(
            ShardRun(
                shard=shard,
                flow_run_id=str(run.id),
                flow_run_name=run.name,
                state=run.state.name if run.state is not None else "?",
                sources=len(mine),
                succeeded=len(mine) - failed_here,
                failed=failed_here,
                rescheduled=rescheduled,
            )
        )
    failed = [o for o in outcomes if o.status == SourceStatus.FAILED]
    summary = FleetSummary.of(tenant, sync_id, outcomes, api_slots=0, shard_runs=shard_runs)
    await publish_shards(summary)
    await publish(summary)
    bad_shards = [s for s in shard_runs if s.state != "Completed"]
    if failed or bad_shards:
        raise FleetFailed.of(
            summary,
            "See the 'splendor-fleet-shards' and 'splendor-fleet-summary' artifacts",
            shards_not_completed=[f"{s.shard} ({s.state})" for s in bad_shards],
        )
    logger.info("Fleet done: %s source(s) synced in %s shards", summary.succeeded, options.shards)
    return summary
