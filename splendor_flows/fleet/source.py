"""One source of a fleet: the engine's sync → wait → ingest, run inside the fleet's flow run.

Why not one task per step, as `sync_source` has: at 1,000 sources that layout costs 4+ task runs, a
progress artifact updated on every poll, two summary artifacts and a fresh HTTP client per step, per
source. And why not one task run per source either: a task run is three state events the Prefect
server records (Pending, Running, Completed), which measured as half of the server's CPU per source
(bench/sharded.py; docs/fleet.md). Here the engine runs the same sequence
(`engine.pipeline.sync_and_ingest`) in-process over the fleet's one HTTP client, with the same retry
rule a step task has, and its checkpoints go straight to the result store under the *same keys* the
per-step tasks use. So the resume semantics are unchanged: a fleet re-run with the same sync_id skips
what is done (no API call), attaches to runs in flight and never starts a second run for an attempt
that has one; `sync_source(source_key, sync_id=...)` can pick up a source the fleet left unfinished.
What a source did is in the fleet's table artifact, its `splendor.*` events and, for warnings and
errors, the flow run's log (each line names the source).
"""

import asyncio
import contextlib
import random
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from splendor_api import SplendorClient
from splendor_flows.engine.clock import Clock, SystemClock
from splendor_flows.engine.context import Deferred, SourceContext
from splendor_flows.engine.errors import CONNECT_FIRST, is_transient
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.pipeline import StoredSteps, sync_and_ingest
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.report import Event, Level
from splendor_flows.engine.run_records import HeldRecords, RunRecords
from splendor_flows.engine.scope import Step
from splendor_flows.engine.store import CheckpointStore
from splendor_flows.orchestration.checkpoint import STEP_RETRY_DELAYS_SECONDS, STEP_RETRY_JITTER
from splendor_flows.orchestration.engine_adapter import PrefectReporter
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.secret_masking import masked
from splendor_flows.orchestration.source_lock import BatchHolds, SourceBusy


class StartsOut:
    """Which sources of the run have not sent their first start yet (or ended without one).

    The run-id record of a start is written beside the wait (engine.context.Deferred); in a fleet it
    also waits for this, at most `RUN_ID_WRITE_WAIT_SECONDS`. The starts are what hold a fleet back
    (each waits for its intent's record), and on a SQLite-backed Prefect server, which takes one write
    at a time, the first sources' run-id writes slowed the last sources' intents.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._pending = set(keys)
        self.all_sent = asyncio.Event()
        if not self._pending:
            self.all_sent.set()

    def sent(self, source_key: str) -> None:
        self._pending.discard(source_key)
        if not self._pending:
            self.all_sent.set()


# How long a run-id record waits for the other sources' starts: it bounds how long a crash leaves a
# start known by its intent only (a resume then finds the run by listing the source's runs).
RUN_ID_WRITE_WAIT_SECONDS = 10.0


class AfterStarts(Deferred):
    """Deferred writes that begin once every source of the fleet sent its start (or after a bound)."""

    def __init__(self, starts: StartsOut) -> None:
        super().__init__()
        self._starts = starts

    def add(self, what: str, write: Coroutine[Any, Any, None]) -> None:
        super().add(what, self._after_starts(write))

    async def _after_starts(self, write: Coroutine[Any, Any, None]) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._starts.all_sent.wait(), RUN_ID_WRITE_WAIT_SECONDS)
        except BaseException:
            write.close()
            raise
        await write


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
    store: CheckpointStore
    # Start records of every source (Prefect Variables, or beside the checkpoints in `store`).
    records: RunRecords
    # Each source's hold (source_lock), taken in batches; its wait says how long a source held by another
    # pipeline is waited for (a scheduled tick waits less than its interval).
    holds: BatchHolds = field(default_factory=lambda: BatchHolds(wait_seconds=3600.0))
    # Whether a source still held after `source_wait_seconds` is skipped (a tick: the holder is syncing
    # it right now) rather than failed (a fleet run asked for by someone).
    skip_busy: bool = False
    # One outcome per source, kept across retries of the source and read when it fails.
    outcomes: dict[str, "SourceOutcome"] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    # The sources that still have to send their start: run-id records wait for them (`AfterStarts`).
    starts: StartsOut = field(default_factory=StartsOut)


class SourceStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Another pipeline held the source for the whole wait (a tick only): that pipeline is its sync.
    BUSY = "busy"


class SourceOutcome(BaseModel):
    source_key: str
    source_id: int | None = None
    status: SourceStatus
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


class FleetReporter:
    """Reports of one source: its step lands in the fleet's table, warnings and errors in the fleet's
    flow-run log, events go out as for any pipeline. Info lines are left out: a fleet of 1,000 sources would
    write thousands, and the summary table already says what each source did."""

    def __init__(self, scope: Scope, outcome: SourceOutcome, starts: StartsOut) -> None:
        self.outcome = outcome
        self.publish = PrefectReporter(scope, min_level="warning")
        self._starts = starts

    def step(self, name: str, run_id: int | None = None) -> None:
        if name == Step.POLL:
            self._starts.sent(self.outcome.source_key)
        self.outcome.step = name
        if run_id is not None:
            self.outcome.run_id = run_id

    def log(self, level: Level, message: str) -> None:
        # Every source of the fleet logs into the one flow run: each line says whose it is.
        self.publish.log(level, f"{self.outcome.source_key}: {message}")

    def event(self, name: Event, payload: dict[str, Any]) -> None:
        self.publish.event(name, payload)

    async def progress(self, percent: float) -> None:
        """The fleet draws one progress bar for all its sources, not one per run."""


async def sync_one(ctx: FleetContext, source_key: str, source_id: int, outcome: SourceOutcome) -> None:
    scope = Scope(
        api_base=ctx.client.config.api_base,
        tenant=ctx.tenant,
        source_key=source_key,
        sync_id=ctx.sync_id,
        credentials_block=ctx.credentials_block,
    )
    report = FleetReporter(scope, outcome, ctx.starts)
    # The run-id record of a start is written while the run is already polled, once the fleet's starts
    # are out.
    deferred = AfterStarts(ctx.starts)
    source = SourceContext(
        api=ctx.client,
        scope=scope,
        report=report,
        history=ctx.history,
        # Read once per hold: only this holder writes the source's records while it holds.
        records=HeldRecords(ctx.records),
        deferred=deferred,
    )
    steps = StoredSteps(source, ctx.store, source_id=source_id, trigger=ctx.trigger, poll=ctx.poll)
    async with ctx.holds.hold(scope):
        try:
            result = await sync_and_ingest(
                scope, report, steps, max_sync_attempts=ctx.max_sync_attempts, wait_ready=ctx.wait_for_ingest
            )
        finally:
            # Inside the hold: the start records are only ever written by the source's holder.
            await deferred.settle(report)
    run = result.run
    outcome.step = None
    outcome.sync_attempts = len(result.attempts)
    outcome.refresh_calls += result.polls
    outcome.resumed = result.resumed
    outcome.run_status = run.status
    outcome.records_synced = run.records_synced
    outcome.completed_at = run.completed_at
    outcome.detected_at = run.detected_at
    outcome.warnings.extend(result.warnings())
    if result.ingest is not None:
        outcome.ingest_run_ids = result.ingest.ingest_run_ids
        outcome.ingest_status = result.ingest.status_text()


# A source whose sync failed on something another try could fix (an outage that outlived the HTTP
# layer's retries, a dropped connection) is tried again by the rule a step task gets from Prefect
# (orchestration.checkpoint: same pauses, same jitter, `is_transient`), without a task run.
SOURCE_RETRY_DELAYS_SECONDS = STEP_RETRY_DELAYS_SECONDS


async def fleet_source(ctx: FleetContext, source_key: str, source_id: int) -> SourceOutcome:
    """Sync one source of the running fleet: its outcome, failed with the error when it could not finish
    (the other sources go on regardless).

    Retried in-process; its checkpoints make the retry skip what the first try finished.
    """
    outcome = ctx.outcomes.setdefault(
        source_key, SourceOutcome(source_key=source_key, source_id=source_id, status=SourceStatus.FAILED)
    )
    pauses = SOURCE_RETRY_DELAYS_SECONDS
    for retry in range(len(pauses) + 1):
        try:
            await sync_one(ctx, source_key, source_id, outcome)
            break
        except SourceBusy as exc:
            outcome.status = SourceStatus.BUSY if ctx.skip_busy else SourceStatus.FAILED
            outcome.error = masked(str(exc))
            return outcome
        except Exception as exc:
            if retry == len(pauses) or not is_transient(exc):
                outcome.status = SourceStatus.FAILED
                # The table artifact is stored in plain text: an error that quotes a secret is masked
                # as the logs and events are.
                outcome.error = masked(str(exc) or type(exc).__name__)
                return outcome
            delay = pauses[retry] * (1 + STEP_RETRY_JITTER * (2 * random.random() - 1))
            outcome.warnings.append(masked(f"retried after: {exc}"))
            await ctx.clock.sleep(delay)
    outcome.status = SourceStatus.SUCCEEDED
    return outcome


def not_onboarded(source_key: str) -> SourceOutcome:
    return SourceOutcome(
        source_key=source_key,
        status=SourceStatus.FAILED,
        step="lookup",
        error=f"[lookup] source '{source_key}': not in the tenant — {CONNECT_FIRST}",
    )
