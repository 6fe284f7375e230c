"""One source of a fleet: start (or attach) → poll → enqueue ingestion, as a single task run.

Why one task per source and not one per step: at 1,000 sources the per-step layout of
`sync_source` costs 4+ task runs, a progress artifact updated on every poll, two summary artifacts
and a fresh HTTP client per step, per source. Here the steps are plain coroutines sharing the
fleet's one HTTP client, and the checkpoints are written straight to the result store under the
*same keys* the per-step tasks use. So the resume semantics are unchanged: a fleet re-run with the
same sync_id skips what is done (no API call), attaches to runs in flight and never starts a
second run for an attempt that has one; `sync_source(source_key, sync_id=...)` can pick up a
source the fleet left unfinished.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.results import ResultStore
from pydantic import BaseModel

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorClient, SplendorError, models
from splendor_api.models import INGEST_ACTIVE, INGEST_TERMINAL_BAD, INGEST_TERMINAL_OK, RUN_TERMINAL
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError, StepError
from splendor_flows.engine.history import RunHistory, run_age
from splendor_flows.engine.polling import PollOptions, PollPlan
from splendor_flows.engine.results import FinishedRun, IngestResult, StartedRun
from splendor_flows.orchestration.checkpoint import CHECKPOINT_TTL, Scope, checkpoint_key
from splendor_flows.orchestration.events import emit
from splendor_flows.tasks.ingest import hand_off
from splendor_flows.tasks.sync import check_status_known, report_finished

# Same ceiling as the per-step pipeline: a source that always fails cannot loop forever.
MAX_TOTAL_ATTEMPTS = 20
_START_TRIES = 3

M = TypeVar("M", bound=BaseModel)


@dataclass
class FleetContext:
    """What every source of one fleet run shares. Lives in one event loop (the client is loop-bound)."""

    client: SplendorClient
    tenant: str
    sync_id: str
    credentials_block: str | None
    trigger: str
    max_sync_attempts: int
    poll: PollOptions
    wait_for_ingest: bool
    history: RunHistory
    store: ResultStore
    # One outcome per source, kept across Prefect retries of its task and read when the task fails.
    outcomes: dict[str, "SourceOutcome"] = field(default_factory=dict)


# Task parameters are stored and shown in the UI, so the shared context travels out of band.
FLEET: ContextVar[FleetContext] = ContextVar("splendor_fleet")


class SourceOutcome(BaseModel):
    source_key: str
    source_id: int | None = None
    status: Literal["succeeded", "failed"]
    step: str | None = None
    error: str | None = None
    run_id: int | None = None
    run_status: str | None = None
    records_synced: int | None = None
    sync_attempts: int = 0
    refresh_calls: int = 0
    resumed: bool = False
    completed_at: datetime | None = None
    detected_at: datetime | None = None
    ingest_run_ids: list[str] = []
    ingest_status: str | None = None
    warnings: list[str] = []


# --- checkpoints ---------------------------------------------------------------------------------


def step_key(scope: Scope, step: str, **ordinal: int) -> str:
    """The key the checkpoint policy computes for the per-step task named `step` with these inputs."""
    fake_ctx: Any = SimpleNamespace(task=SimpleNamespace(name=step))
    return checkpoint_key(fake_ctx, {"scope": scope, **ordinal})


async def checkpointed(
    ctx: FleetContext, key: str, model: type[M], produce: Callable[[], Awaitable[M]]
) -> tuple[M, bool]:
    """The stored result under `key`, or produce and store it. Returns (value, came_from_checkpoint)."""
    if await ctx.store.aexists(key):
        record = await ctx.store.aread(key)
        value = record.result
        return (value if isinstance(value, model) else model.model_validate(value)), True
    value = await produce()
    await ctx.store.awrite(obj=value, key=key, expiration=datetime.now(UTC) + CHECKPOINT_TTL)
    return value, False


# --- steps ---------------------------------------------------------------------------------------


async def start_or_attach(
    ctx: FleetContext, scope: Scope, source_id: int, attempt: int
) -> tuple[StartedRun, models.ConnectorRun]:
    """Start a run; a 409 sync_in_progress (schedule, console, another flow) attaches to that run."""
    for try_number in range(1, _START_TRIES + 1):
        try:
            run = await ctx.client.start_sync(source_id, ctx.trigger)
        except Conflict as exc:
            if exc.code == "sync_in_progress" and exc.run_id is not None:
                current = await ctx.client.get_run(exc.run_id)
                started = StartedRun(
                    run_id=current.run_id, attempt=attempt, attached=True, status=current.status
                )
                return started, current
            if exc.code == "no_connection":
                raise PermanentStepError(
                    "sync",
                    scope.source_key,
                    "the source has no connection",
                    "run `splendor-flows apply` first",
                ) from None
            raise
        except OutcomeUnknown:
            # The start may have happened: asking again gets 409 sync_in_progress if it did.
            if try_number == _START_TRIES:
                raise
            continue
        emit(
            "splendor.sync.started", scope, {"source_id": source_id, "run_id": run.run_id, "attempt": attempt}
        )
        return StartedRun(run_id=run.run_id, attempt=attempt, attached=False, status=run.status), run
    raise AssertionError("unreachable")


async def poll_run(
    ctx: FleetContext, scope: Scope, run_id: int, first: models.ConnectorRun | None, outcome: SourceOutcome
) -> FinishedRun:
    """Refresh the run on the plan's schedule until it is terminal; a failed request never fails the sync."""
    plan = PollPlan(ctx.poll, ctx.history.expectation(scope.tenant, scope.source_key))
    began = time.monotonic()
    run = first
    retry_after: float | None = None
    while True:
        if run is not None and run.status in RUN_TERMINAL:
            break
        if time.monotonic() - began > ctx.poll.deadline_seconds:
            raise DeadlineExceeded(
                "poll",
                scope.source_key,
                f"run {run_id} still not finished after {ctx.poll.deadline_seconds:.0f} s",
                f"the run goes on in Splendor; re-run the fleet or sync-source with sync_id={scope.sync_id}",
            )
        if run is not None:
            await asyncio.sleep(plan.delay(run_age(run.created_at) or 0.0, retry_after))
        retry_after = None
        try:
            fresh = await ctx.client.refresh_run(run_id)
        except NotFound:
            raise PermanentStepError("poll", scope.source_key, f"run {run_id} no longer exists") from None
        except SplendorError as exc:
            retry_after = getattr(exc, "retry_after", None)
            if run is None:
                await asyncio.sleep(max(retry_after or 0.0, ctx.poll.initial_seconds))
            continue
        outcome.refresh_calls += 1
        check_status_known(scope, fresh)
        plan.observe(fresh.status)
        run = fresh
    outcome.detected_at = datetime.now(UTC)
    outcome.completed_at = run.completed_at
    finished = report_finished(scope, run, outcome.refresh_calls)
    if run.status == "succeeded" and finished.duration_seconds is not None:
        ctx.history.record(scope.tenant, scope.source_key, finished.duration_seconds)
    return finished


async def enqueue(
    ctx: FleetContext, scope: Scope, source_id: int, run_id: int, look_first: bool
) -> IngestResult:
    """Hand the run to ingestion through the fleet's shared client (same rules as the step task)."""
    return await hand_off(ctx.client, scope, source_id, run_id, look_first=look_first)


async def wait_ready(ctx: FleetContext, scope: Scope, result: IngestResult) -> IngestResult:
    plan = PollPlan(ctx.poll)
    began = time.monotonic()
    pending = set(result.ingest_run_ids)
    statuses = dict(result.statuses)
    while pending:
        for ingest_id in sorted(pending):
            try:
                run = await ctx.client.get_ingest_run(ingest_id)
            except NotFound:
                raise PermanentStepError(
                    "ingest", scope.source_key, f"ingest run {ingest_id} vanished"
                ) from None
            except SplendorError:
                continue
            statuses[ingest_id] = run.status
            if run.status in INGEST_TERMINAL_OK or run.status in INGEST_TERMINAL_BAD:
                pending.discard(ingest_id)
            elif run.status not in INGEST_ACTIVE:
                raise PermanentStepError(
                    "ingest", scope.source_key, f"ingest run {ingest_id} has an unknown status '{run.status}'"
                )
        plan.observe("running")
        if not pending:
            break
        if time.monotonic() - began > ctx.poll.deadline_seconds:
            raise DeadlineExceeded("ingest", scope.source_key, "ingestion not ready before the deadline")
        await asyncio.sleep(plan.delay(time.monotonic() - began))
    failed = sorted(k for k, v in statuses.items() if v in INGEST_TERMINAL_BAD)
    if failed:
        emit("splendor.ingest.failed", scope, {"run_id": result.run_id, "failed": failed})
        raise PermanentStepError("ingest", scope.source_key, f"ingestion failed for {', '.join(failed)}")
    emit("splendor.ingest.ready", scope, {"run_id": result.run_id, "ingest_run_ids": result.ingest_run_ids})
    return result.model_copy(update={"statuses": statuses})


# --- the unit ------------------------------------------------------------------------------------


async def sync_one(ctx: FleetContext, source_key: str, source_id: int, outcome: SourceOutcome) -> None:
    scope = Scope(
        tenant=ctx.tenant, source_key=source_key, sync_id=ctx.sync_id, credentials_block=ctx.credentials_block
    )
    new_attempts = 0
    finished: FinishedRun | None = None
    reused = False
    for attempt in range(1, MAX_TOTAL_ATTEMPTS + 1):
        outcome.step = "sync"
        first: list[models.ConnectorRun] = []

        async def start(attempt: int = attempt, first: list[models.ConnectorRun] = first) -> StartedRun:
            started, run = await start_or_attach(ctx, scope, source_id, attempt)
            first.append(run)
            return started

        started, start_cached = await checkpointed(
            ctx, step_key(scope, "sync", attempt=attempt), StartedRun, start
        )
        outcome.step = "poll"
        outcome.run_id = started.run_id

        async def wait(run_id: int = started.run_id, first: list[models.ConnectorRun] = first) -> FinishedRun:
            return await poll_run(ctx, scope, run_id, first[0] if first else None, outcome)

        finished, poll_cached = await checkpointed(
            ctx, step_key(scope, "poll", run_id=started.run_id), FinishedRun, wait
        )
        outcome.sync_attempts = attempt
        reused = reused or start_cached or started.attached
        if not (start_cached and poll_cached):
            new_attempts += 1
        if finished.status == "succeeded":
            break
        if new_attempts >= ctx.max_sync_attempts:
            raise StepError(
                "sync",
                source_key,
                f"{new_attempts} sync attempt(s) failed; last run {finished.run_id} ended {finished.status}: "
                f"{finished.error_message or 'no error message'}",
                f"fix the cause, then re-run with sync_id={scope.sync_id}",
            )
    else:
        raise StepError("sync", source_key, f"gave up after {MAX_TOTAL_ATTEMPTS} attempts in total")
    assert finished is not None
    outcome.resumed = reused
    outcome.run_status = finished.status
    outcome.records_synced = finished.records_synced
    if not finished.records_synced:
        outcome.warnings.append(f"run {finished.run_id} succeeded with 0 records")
    outcome.step = "enqueue-ingest"

    async def hand_off(run_id: int = finished.run_id) -> IngestResult:
        return await enqueue(ctx, scope, source_id, run_id, look_first=reused)

    ingest, _ = await checkpointed(
        ctx, step_key(scope, "enqueue-ingest", run_id=finished.run_id), IngestResult, hand_off
    )
    if ingest.ingest_run_ids and ctx.wait_for_ingest:
        outcome.step = "ingest-ready"

        async def ready(ingest: IngestResult = ingest) -> IngestResult:
            return await wait_ready(ctx, scope, ingest)

        ingest, _ = await checkpointed(
            ctx, step_key(scope, "ingest-ready", run_id=finished.run_id), IngestResult, ready
        )
    outcome.ingest_run_ids = ingest.ingest_run_ids
    if ingest.skipped_reason:
        outcome.ingest_status = f"skipped ({ingest.skipped_reason})"
    else:
        outcome.ingest_status = ", ".join(sorted(set(ingest.statuses.values()))) or "enqueued"
    outcome.step = None


async def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a source only for errors worth retrying (the HTTP layer already retried the rest).

    Async on purpose: in an async context `state.result()` returns a coroutine instead of raising.
    """
    try:
        await state.aresult()
    except (PermanentStepError, DeadlineExceeded):
        return False
    except StepError:
        return False  # the source's own sync attempts are spent; another round would not be bounded
    except SplendorError as exc:
        return not exc.permanent
    except Exception:
        return True
    return False


@task(
    name="fleet-source",
    task_run_name="sync {source_key}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_transient,
)
async def fleet_source(source_key: str, source_id: int) -> SourceOutcome:
    """Sync one source of the running fleet; raises (and the fleet records it) when the source fails."""
    ctx = FLEET.get()
    outcome = ctx.outcomes.setdefault(
        source_key, SourceOutcome(source_key=source_key, source_id=source_id, status="failed")
    )
    await sync_one(ctx, source_key, source_id, outcome)
    outcome.status = "succeeded"
    return outcome


def not_onboarded(source_key: str) -> SourceOutcome:
    return SourceOutcome(
        source_key=source_key,
        status="failed",
        step="lookup",
        error=f"[lookup] source '{source_key}': not in the tenant — run `splendor-flows apply` to onboard it",
    )
