"""sync_scheduled: what a tenant's schedules run, many sources per flow run.

`splendor-flows apply` puts every source whose spec has a Prefect schedule into a *schedule group* on
the `sync-scheduled` deployment: one Prefect schedule per window of crons (a quarter of an hour of
crons that differ only in their minute), time zone and credentials block, whose parameters list the
group's source keys and when in the window each is due (orchestration/source_schedules.py). Prefect's
scheduler creates the group's runs as it does for any schedule, and each run (a tick) syncs the
group's sources concurrently in this one process, as a fleet does (splendor_flows/fleet/run.py), each
from the moment it is due: the tick waits in its process for the sources due later in its window.

Why not one schedule and one flow run per source: a flow-run process costs about a second of CPU to
start (importing Prefect and this project), which for a tenant of a thousand hourly sources is more
than the whole orchestration budget; and the scheduler keeps at least three future runs per schedule,
so a thousand per-source schedules mean thousands of Scheduled runs in the database at all times.

A tick does not wait long for a source that another pipeline holds (a manual sync, a fleet, the
previous tick still polling a long run): after `source_wait_seconds` it leaves the source to that
pipeline, which is syncing it right now, and reports it `busy`. Only on its first run: a tick resumed
after a crash (or a Retry) may have started runs it has not handed to ingestion yet, so it waits for its
sources as long as a fleet does.

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect import State, flow, get_client, get_run_logger
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run
from prefect.states import AwaitingRetry
from pydantic import Field

from splendor_api import ConfigError
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.sync import MAX_TOTAL_ATTEMPTS
from splendor_flows.fleet.run import (
    DEFAULT_CONCURRENCY_LIMIT,
    FleetOptions,
    FleetSummary,
    finish,
    synced_summary,
)
from splendor_flows.fleet.shards import RESUMED_UP_TO_RUN_COUNT, ZOMBIE_MESSAGE
from splendor_flows.orchestration.failure_masking import masks_failures
from splendor_flows.specs.source import validate_source_key

# Below the shortest interval a cron can express (a minute): a tick never waits into the next one.
TICK_SOURCE_WAIT_SECONDS = 50.0
# Slots of the tenant's API limit a tick holds: a share, so that the ticks of several groups (and a
# fleet) run side by side within the limit instead of queueing behind each other.
TICK_MAX_CONCURRENCY = 10


async def resume_crashed_ticks(source_keys: list[str]) -> int:
    """Reschedule this group's earlier ticks that zombie detection marked Crashed; returns how many.

    `source_keys` are the group's sources, sorted and without repeats.

    The resume automation (deployments/automations.yaml) does this for every run of the project, but in
    Prefect 3.9.1 it was measured not to act on the Crashed event of a run the scheduler created (the same
    automation resumes a run of the same deployment started by hand: tests/e2e_stack). A crashed tick may
    hold Splendor runs it started and never handed to ingestion, so the group's next tick sets it back to
    AwaitingRetry, as the automation would, within the same bound (twice per run).
    """
    this = flow_run.get_id()
    deployment = runtime_deployment.get_id()
    if this is None or deployment is None:
        return 0
    wanted = sorted(source_keys)
    async with get_client() as client:
        crashed = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[UUID(deployment)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
            ),
            limit=50,
        )
        resumed = 0
        for run in crashed:
            if (
                str(run.id) == this
                or sorted(set(run.parameters.get("source_keys") or [])) != wanted
                or run.state is None
                or run.state.message != ZOMBIE_MESSAGE
                or run.run_count > RESUMED_UP_TO_RUN_COUNT
            ):
                continue
            retry: State[Any] = AwaitingRetry(
                message="Rescheduled by the group's next tick after missing heartbeats"
            )
            result = await client.set_flow_run_state(run.id, retry)
            if result.status.value == "ACCEPT":
                resumed += 1
                get_run_logger().warning("Tick %s had crashed (its worker died): rescheduled it", run.name)
    return resumed


def waves(keys: list[str], start_after_seconds: dict[str, int]) -> list[tuple[int, list[str]]]:
    """The group's sources by the second after the tick's scheduled time they are due, earliest first."""
    by_second: dict[int, list[str]] = {}
    for key in keys:
        by_second.setdefault(start_after_seconds.get(key, 0), []).append(key)
    return sorted(by_second.items())


async def sync_due(
    keys: list[str], start_after_seconds: dict[str, int], options: FleetOptions, **how: Any
) -> FleetSummary:
    """Sync each source once it is due (what `synced_summary` takes in `how`), then publish one summary.

    The sources due at one moment are synced together, as a fleet's; a wave starts whether or not the
    earlier ones finished, so a long sync never delays the sources due after it. The moments count from
    the run's expected start time, which Prefect keeps through reschedules: a tick resumed after a crash
    syncs at once the sources whose time has passed, and waits for the others.
    """
    scheduled = flow_run.scheduled_start_time or datetime.now(UTC)

    async def wave(after: int, wave_keys: list[str]) -> FleetSummary:
        wait = (scheduled + timedelta(seconds=after) - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        return await synced_summary(wave_keys, options, **how)

    running = [
        asyncio.ensure_future(wave(after, wave_keys)) for after, wave_keys in waves(keys, start_after_seconds)
    ]
    try:
        summaries = await asyncio.gather(*running)
    except BaseException:
        # What stops one wave (a bad credentials block, a closed limit) stops the tick, raised as itself
        # (the CLI and the failure masking read its type), not wrapped in an exception group.
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    first = summaries[0]
    outcomes = [outcome for summary in summaries for outcome in summary.outcomes]
    slots = max(summary.api_slots for summary in summaries)
    return await finish(FleetSummary.of(first.tenant, first.sync_id, outcomes, api_slots=slots))


# Prefect 3.9 sets a schedule's parameters to {} on any update that does not send them: pausing or
# resuming the schedule from its UI toggle, `prefect deployment schedule pause|resume`, or the REST API.
# A group schedule then ticks with no sources; the tick says how to restore them instead of crashing on
# a missing parameter.
NO_SOURCE_KEYS = (
    "source_keys: this sync-scheduled schedule lists no sources (Prefect clears a schedule's parameters "
    "when it is paused or resumed); run `splendor-flows apply` on the connectors file to restore the "
    "schedule groups, and remove a source's `schedule` from its spec to stop syncing it"
)


@flow(name="sync-scheduled", log_prints=False)
@masks_failures
async def sync_scheduled(
    source_keys: list[str] | None = None,
    credentials_block: str | None = None,
    sync_id: str | None = None,
    trigger: Literal["manual", "scheduled", "backfill"] = "scheduled",
    max_concurrency: Annotated[int, Field(ge=1, le=1000)] = TICK_MAX_CONCURRENCY,
    max_sync_attempts: Annotated[int, Field(ge=1, le=MAX_TOTAL_ATTEMPTS)] = 2,
    poll: PollOptions = PollOptions(),
    wait_for_ingest: bool = False,
    concurrency_limit: str | None = DEFAULT_CONCURRENCY_LIMIT,
    source_wait_seconds: Annotated[float, Field(ge=0, le=3600)] = TICK_SOURCE_WAIT_SECONDS,
    start_after_seconds: dict[str, Annotated[int, Field(ge=0, le=3600)]] | None = None,
) -> FleetSummary:
    """Sync the sources of one schedule group (set by `splendor-flows apply`; not meant to be edited).

    Args:
        source_keys: the group's sources.
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        sync_id: leave empty (each tick syncs afresh); a Retry of a tick resumes it.
        trigger: how Splendor records the runs.
        max_concurrency: API requests in flight at once for this tick (its share of the tenant's limit).
        max_sync_attempts: new sync runs a source may start in this tick when runs fail.
        poll: how to poll runs.
        wait_for_ingest: also wait until each source's ingestion is `ready`.
        concurrency_limit: the tenant's global concurrency limit (`{tenant}` is replaced).
        source_wait_seconds: how long to wait for a source another pipeline holds before leaving it to
            that pipeline.
        start_after_seconds: when each source is due, in seconds after the tick's scheduled time
            (absent: at the tick).
    """
    if not source_keys:
        raise ConfigError(NO_SOURCE_KEYS)
    for key in source_keys:
        validate_source_key(key)
    options = FleetOptions(
        # A tick has no connectors file: its sources come from its schedule.
        connectors_file="",
        max_concurrency=max_concurrency,
        credentials_block=credentials_block,
        sync_id=sync_id,
        trigger=trigger,
        max_sync_attempts=max_sync_attempts,
        poll=poll,
        wait_for_ingest=wait_for_ingest,
        concurrency_limit=concurrency_limit,
    )
    keys = sorted(set(source_keys))
    due = start_after_seconds or {}
    await resume_crashed_ticks(keys)
    if (flow_run.run_count or 1) > 1:
        # A tick resumed after a crash or a Retry may have started runs it has not handed to ingestion:
        # leaving a source to another pipeline now would leave that run un-ingested. It waits for each
        # source as a fleet does, then attaches to its own run.
        return await sync_due(keys, due, options)
    return await sync_due(keys, due, options, source_wait_seconds=source_wait_seconds, skip_busy=True)
