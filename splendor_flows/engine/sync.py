"""The sync state machine: start a run or attach to the one in flight, wait for it, try again.

Design §3: a 409 sync_in_progress (a run started by a schedule, the console or another pipeline)
attaches to that run. A start whose outcome is unknown is asked again, because the second ask gets
that 409 when the first one did start. A failed poll *request* never fails the *sync*: only the
deadline, a vanished run, an answer that asking again cannot change, or an unknown status do.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorError, models
from splendor_api.models import RUN_ACTIVE, RUN_TERMINAL, RunStatus
from splendor_flows.engine.client_protocol import ConflictCode
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.errors import CONNECT_FIRST, PermanentStepError, StepError, resume_hint
from splendor_flows.engine.history import run_age, run_duration
from splendor_flows.engine.polling import Expectation, PollGuard, PollOptions, PollPlan
from splendor_flows.engine.report import Event, Reporter
from splendor_flows.engine.results import FinishedRun, StartedRun
from splendor_flows.engine.run_records import SourceRuns, StartRecord, pipeline_of
from splendor_flows.engine.scope import ScopeLike, Step

# How often a start with an unknown outcome is sent again within one step.
START_TRIES = 3
# Attempts of one sync_id across all resumes, so a source that always fails cannot loop forever.
MAX_TOTAL_ATTEMPTS = 20


async def start_or_attach(
    ctx: SourceContext, source_id: int, attempt: int, trigger: str
) -> tuple[StartedRun, models.ConnectorRun]:
    """Start a run, or attach to the one in flight. Returns the checkpoint and the API's answer.

    With shared run records, the attempt's record is read first (another worker may have started its
    run) and the start is recorded before it is sent, again once its run id is known, and withdrawn
    when the API refused it.
    """
    known: SourceRuns | None = None
    if ctx.deferred is not None:
        # An earlier attempt's run-id record may still be in flight: it would write over this intent.
        await ctx.deferred.settle(ctx.report)
    if ctx.records is not None:
        known = await ctx.records.read(ctx.scope)
        recorded = await _recorded_start(ctx, source_id, attempt, known)
        if recorded is not None:
            return recorded
    requested_at = ctx.clock.now()
    # The records were read just now: writing over that read saves a Prefect API call per source, which
    # a fleet of a thousand sources pays a thousand times; later writes read again to merge.
    await _record(ctx, attempt, requested_at, run_id=None, known=known)
    tries = _Tries()
    try:
        return await _start(ctx, source_id, attempt, trigger, requested_at, tries)
    except (SplendorError, StepError):
        if not tries.unknown:
            # Every try was answered, and the answer was no (a 4xx, load shed past the retry budget:
            # the client turns anything else a mutating call meets into OutcomeUnknown). No run can
            # exist for this start, so its intent goes, or a resume on an API that cannot list runs
            # would stop on a start that never happened.
            await _withdraw(ctx, attempt)
        raise


@dataclass
class _Tries:
    # A try's outcome was unknown: it may have started a run, so its intent must stay recorded.
    unknown: bool = False


async def _start(
    ctx: SourceContext,
    source_id: int,
    attempt: int,
    trigger: str,
    requested_at: datetime,
    tries: _Tries,
) -> tuple[StartedRun, models.ConnectorRun]:
    for try_number in range(1, START_TRIES + 1):
        try:
            run = await ctx.api.start_sync(source_id, trigger)
        except Conflict as exc:
            if exc.code == ConflictCode.SYNC_IN_PROGRESS and exc.run_id is not None:
                current = await ctx.api.get_run(exc.run_id)
                ctx.report.log("info", f"A sync is already in flight (run {exc.run_id}): attaching to it")
                await _record(ctx, attempt, requested_at, run_id=current.run_id)
                return _started(current, attempt, attached=True), current
            if exc.code == ConflictCode.NO_CONNECTION:
                raise PermanentStepError(
                    Step.SYNC, ctx.scope.source_key, "the source has no connection", CONNECT_FIRST
                ) from None
            raise
        except OutcomeUnknown:
            tries.unknown = True
            # Did the lost start create a run? A list of the source's runs says so even when that run
            # already finished (a second start would then not get a 409 and sync twice).
            found = await _runs_since(ctx, source_id, requested_at)
            if found is not None and len(found) == 1:
                [run] = found
                ctx.report.log("warning", f"Start-sync answer lost; run {run.run_id} is the one it started")
                await _record(ctx, attempt, requested_at, run_id=run.run_id)
                return _started(run, attempt, attached=True), run
            if found is not None and len(found) > 1:
                raise _ambiguous(ctx, attempt, found) from None
            if try_number == START_TRIES:
                raise
            ctx.report.log("warning", "Start-sync outcome unknown; asking again (a 409 means it did start)")
            continue
        if ctx.deferred is not None and ctx.records is not None:
            ctx.deferred.add(
                f"attempt {attempt}'s run-id record", _record(ctx, attempt, requested_at, run_id=run.run_id)
            )
        else:
            await _record(ctx, attempt, requested_at, run_id=run.run_id)
        ctx.report.log("info", f"Started sync run {run.run_id} (attempt {attempt})")
        ctx.report.event(
            Event.SYNC_STARTED, {"source_id": source_id, "run_id": run.run_id, "attempt": attempt}
        )
        return _started(run, attempt, attached=False), run
    raise AssertionError("unreachable")


# A run created this long before the start was recorded still counts as its run: the two clocks
# (this worker's, Splendor's) may disagree by a little.
CLOCK_SKEW = timedelta(seconds=5)


async def _record(
    ctx: SourceContext,
    attempt: int,
    requested_at: datetime,
    run_id: int | None,
    known: SourceRuns | None = None,
) -> None:
    if ctx.records is None:
        return
    runs = known if known is not None else await ctx.records.read(ctx.scope)
    start = StartRecord(
        pipeline=pipeline_of(ctx.scope), attempt=attempt, requested_at=requested_at, run_id=run_id
    )
    if run_id is None:
        await ctx.records.intend(ctx.scope, runs, start)
    else:
        await ctx.records.write(ctx.scope, runs.with_start(start))


async def _withdraw(ctx: SourceContext, attempt: int) -> None:
    if ctx.records is None:
        return
    try:
        runs = await ctx.records.read(ctx.scope)
        await ctx.records.write(ctx.scope, runs.without(pipeline_of(ctx.scope), attempt))
    except Exception as exc:
        # The refusal is the failure to report; an intent left behind only makes a resume look first.
        ctx.report.log(
            "warning", f"Could not withdraw attempt {attempt}'s start record ({type(exc).__name__})"
        )


async def _runs_since(
    ctx: SourceContext, source_id: int, since: datetime
) -> list[models.ConnectorRun] | None:
    """The source's runs this start may have created: those created since `since` (less the clock
    skew), or None when this API cannot list runs.

    A run created before `since` that the records already give to another start (an earlier
    attempt, another pipeline of the source) is that start's, however close in time: short runs
    of a previous attempt fall inside the skew allowance.
    """
    try:
        runs = await ctx.api.list_runs(source_id)
    except NotFound:
        return None
    taken: set[int] = set()
    if ctx.records is not None:
        taken = {s.run_id for s in (await ctx.records.read(ctx.scope)).starts if s.run_id is not None}
    return [
        r
        for r in runs
        if r.created_at is not None
        and r.created_at >= since - CLOCK_SKEW
        and not (r.run_id in taken and r.created_at < since)
    ]


def _ambiguous(ctx: SourceContext, attempt: int, runs: list[models.ConnectorRun]) -> StepError:
    ids = ", ".join(str(r.run_id) for r in runs)
    return PermanentStepError(
        Step.SYNC,
        ctx.scope.source_key,
        f"attempt {attempt}'s start-sync answer was lost and runs {ids} started since; which one is this "
        "pipeline's cannot be told",
        "check those runs in Splendor and hand the one to keep to ingestion; nothing new was started",
    )


async def _recorded_start(
    ctx: SourceContext, source_id: int, attempt: int, runs: SourceRuns
) -> tuple[StartedRun, models.ConnectorRun] | None:
    """The run this attempt already started, by the shared records; None when it never sent a start."""
    assert ctx.records is not None
    prior = runs.find(pipeline_of(ctx.scope), attempt)
    if prior is None:
        return None
    if prior.run_id is not None:
        run = await ctx.api.get_run(prior.run_id)
        ctx.report.log(
            "info", f"Attempt {attempt} already started run {run.run_id} (shared run records): attaching"
        )
        return _started(run, attempt, attached=True, recorded=True), run
    found = await _runs_since(ctx, source_id, prior.requested_at)
    if found is None:
        raise PermanentStepError(
            Step.SYNC,
            ctx.scope.source_key,
            f"attempt {attempt}'s start-sync was sent at {prior.requested_at:%Y-%m-%d %H:%M:%S} UTC and its "
            "answer was lost; this API cannot list the source's runs, so whether that run exists is "
            "unknown and nothing new was started",
            "look at the source's runs in Splendor: hand a run started then to ingestion; to sync anew, "
            f"{ctx.records.forget_hint(ctx.scope)} and {resume_hint(ctx.scope.sync_id)}",
        )
    if len(found) > 1:
        # Typically a holder killed between its intent and its run-id record: once its lease ran out,
        # another pipeline held the source and started a run of its own.
        before = _before_later_starts(found, runs, prior)
        if len(before) != 1:
            raise _ambiguous(ctx, attempt, found)
        found = before
    if not found:
        ctx.report.log("info", f"Attempt {attempt}'s earlier start never created a run: starting one")
        return None
    [run] = found
    ctx.report.log(
        "warning", f"Attempt {attempt}'s start answer was lost; run {run.run_id} is the one it started"
    )
    await _record(ctx, attempt, prior.requested_at, run_id=run.run_id)
    return _started(run, attempt, attached=True, recorded=True), run


def _before_later_starts(
    found: list[models.ConnectorRun], runs: SourceRuns, prior: StartRecord
) -> list[models.ConnectorRun]:
    """The runs of `found` created before any start recorded after `prior` (less the clock skew).

    A later start was recorded by the source's next holder, before it sent anything, so a run created
    earlier is not that start's. Only used to pick among several runs: an empty answer is no proof
    that `prior` started nothing (its run may be created in the last moments before the next holder's
    start), so it never leads to a new start.
    """
    later = [
        s.requested_at
        for s in runs.starts
        if s.requested_at > prior.requested_at and (s.pipeline, s.attempt) != (prior.pipeline, prior.attempt)
    ]
    if not later:
        return found
    cut = min(later) - CLOCK_SKEW
    return [r for r in found if r.created_at is not None and r.created_at < cut]


def _started(run: models.ConnectorRun, attempt: int, *, attached: bool, recorded: bool = False) -> StartedRun:
    return StartedRun(
        run_id=run.run_id, attempt=attempt, attached=attached, status=run.status, recorded=recorded
    )


def check_status_known(ctx: SourceContext, run: models.ConnectorRun) -> None:
    """Fail closed on a status outside the contract rather than guess whether it is terminal."""
    if run.status not in RUN_TERMINAL and run.status not in RUN_ACTIVE:
        raise PermanentStepError(
            Step.POLL,
            ctx.scope.source_key,
            f"run {run.run_id} has an unknown status '{run.status}'",
            "the API may have changed; the pipeline stops rather than guess",
        )


def poll_plan(ctx: SourceContext, options: PollOptions, expected_seconds: float | None = None) -> PollPlan:
    """The schedule for a run of this source: an explicit expected duration wins over the history."""
    if expected_seconds:
        expectation = Expectation.from_durations([expected_seconds])
    elif ctx.history is not None:
        expectation = ctx.history.expectation(ctx.scope.tenant, ctx.scope.source_key)
    else:
        expectation = None
    return PollPlan(options, expectation)


async def wait_for_run(
    ctx: SourceContext, run_id: int, plan: PollPlan, known: models.ConnectorRun | None = None
) -> tuple[models.ConnectorRun, int]:
    """Refresh the run on the plan's schedule until it is terminal. Returns it and the refresh count.

    `known` is an answer just received (from the start call): the first refresh then waits for the
    plan instead of asking again at once.
    """
    guard = PollGuard(ctx.clock, plan.options, step=Step.POLL, scope=ctx.scope)
    expected = plan.expectation.median if plan.expectation is not None else None
    await ctx.report.progress(0.0)
    answer = known
    last_status = ""
    polls = 0
    while True:
        planned = 0.0  # nothing heard yet (or the last request failed): the guard decides
        if answer is not None:
            if answer.status != last_status:
                ctx.report.log("info", f"Run {run_id} is {answer.status}")
                last_status = answer.status
            if answer.status in RUN_TERMINAL:
                break
            check_status_known(ctx, answer)
            # Run durations in the history are measured from creation, so the age must be too.
            age = run_age(answer.created_at, ctx.clock.now())
            if expected and age is not None:
                await ctx.report.progress(min(99.0, 100.0 * age / expected))
            planned = plan.delay(age or guard.elapsed())
        guard.check_deadline(f"run {run_id} still not finished")
        delay = guard.pause_after(planned)
        if delay > 0:
            await ctx.clock.sleep(delay)
        try:
            answer = await ctx.api.refresh_run(run_id)
        except SplendorError as exc:
            guard.failed(exc, f"run {run_id}")
            answer = None
            continue
        polls += 1
        guard.answered()
        plan.observe(answer.status)
    await ctx.report.progress(100.0)
    return answer, polls


def finish_run(ctx: SourceContext, run: models.ConnectorRun, polls: int) -> FinishedRun:
    """The poll checkpoint of a terminal run, announced, logged and added to the history."""
    finished = FinishedRun(
        run_id=run.run_id,
        status=run.status,
        records_synced=run.records_synced,
        bytes_synced=run.bytes_synced,
        error_message=run.error_message,
        duration_seconds=run_duration(run.created_at, run.completed_at),
        polls=polls,
        completed_at=run.completed_at,
        detected_at=ctx.clock.now(),
    )
    succeeded = run.status == RunStatus.SUCCEEDED
    ctx.report.event(
        Event.SYNC_SUCCEEDED if succeeded else Event.SYNC_FAILED,
        {"source_id": run.source_id, **finished.model_dump(exclude={"polls", "completed_at", "detected_at"})},
    )
    if not succeeded:
        reason = run.error_message or "no error message"
        ctx.report.log("error", f"Run {run.run_id} ended {run.status}: {reason}")
        return finished
    if finished.duration_seconds is not None and ctx.history is not None:
        ctx.history.record(ctx.scope.tenant, ctx.scope.source_key, finished.duration_seconds)
    if not run.records_synced:
        ctx.report.log(
            "warning",
            f"Run {run.run_id} succeeded with 0 records: check the source's filters and credentials",
        )
    return finished


async def wait_and_finish(
    ctx: SourceContext,
    run_id: int,
    options: PollOptions,
    *,
    expected_seconds: float | None = None,
    known: models.ConnectorRun | None = None,
) -> FinishedRun:
    """The poll step: wait for the run, then report how it ended."""
    run, polls = await wait_for_run(ctx, run_id, poll_plan(ctx, options, expected_seconds), known)
    return finish_run(ctx, run, polls)


# --- the attempt loop ----------------------------------------------------------------------------

# A step's value and whether it came back from a checkpoint (True) or ran now (False).
Start = Callable[[int], Awaitable[tuple[StartedRun, bool]]]
Wait = Callable[[StartedRun], Awaitable[tuple[FinishedRun, bool]]]


@dataclass
class Attempts:
    runs: list[FinishedRun] = field(default_factory=list)
    # A start came back from a checkpoint, or attached to a run started elsewhere.
    resumed: bool = False
    # Refresh calls of the waits that ran now.
    polls: int = 0


async def sync_attempts(
    scope: ScopeLike, report: Reporter, start: Start, wait: Wait, *, max_sync_attempts: int
) -> Attempts:
    """Start and wait until a run succeeds; raises StepError when the attempts are spent.

    Each attempt's start checkpoint names its run. On resume a run in flight is attached to (its
    wait has no checkpoint yet), a succeeded one ends the loop, a failed or cancelled one makes the
    next attempt start a new run. Attempts that came back whole (from checkpoints, or from the run
    records when this worker has no checkpoints) do not count against this run's
    `max_sync_attempts`; MAX_TOTAL_ATTEMPTS bounds them all.
    """
    done = Attempts()
    new_attempts = 0
    for attempt in range(1, MAX_TOTAL_ATTEMPTS + 1):
        report.step(Step.SYNC)
        started, start_cached = await start(attempt)
        report.step(Step.POLL, started.run_id)
        finished, wait_cached = await wait(started)
        done.runs.append(finished)
        done.resumed = done.resumed or start_cached or started.attached
        if not wait_cached:
            done.polls += finished.polls
        # An attempt comes back whole when an earlier process started it and its run had ended before
        # this one looked: from checkpoints, or (on a worker without them) from the shared run records.
        # Counting those would leave a resume elsewhere no budget at all.
        earlier = start_cached or started.recorded
        ended = wait_cached or (started.recorded and started.status in RUN_TERMINAL)
        if not (earlier and ended):
            new_attempts += 1
        if finished.status == RunStatus.SUCCEEDED:
            return done
        if new_attempts >= max_sync_attempts:
            raise StepError(
                Step.SYNC,
                scope.source_key,
                f"{new_attempts} sync attempt(s) failed in this run; last run {finished.run_id} ended "
                f"{finished.status}: {finished.error_message or 'no error message'}",
                f"fix the cause, then {resume_hint(scope.sync_id)} to try again",
            )
        report.log(
            "warning", f"Run {finished.run_id} ended {finished.status}; starting attempt {attempt + 1}"
        )
    raise StepError(
        Step.SYNC,
        scope.source_key,
        f"gave up after {MAX_TOTAL_ATTEMPTS} attempts in total",
        "fix the cause, then start a new sync (a new sync_id)",
    )
