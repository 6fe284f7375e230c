"""Ingest repair: hand the failed ingest runs of a sync to ingestion again, bounded, and say what could
not be repaired and why.

The contract's rule (splendor-api.md §0, [ASSUMED] for the live API): enqueue-ingest for a run whose
ingest runs exist queues afresh each object whose ingest run `failed` with `lifecycle.repairable`, marks
the failed one `superseded`, and returns every other ingest run of the run as it is. So a repair is one
enqueue call, and enqueueing again never duplicates a ready or in-flight ingest run.

Splendor is the only record of what was tried: the attempts a run has had are the superseded ingest runs
of its objects (read with `include_non_current`). A second call, a resumed one or one on another worker
counts the same attempts, waits for a repair in flight instead of queueing another, and leaves a run that
is ready alone. Each run is read again when its turn comes, not taken from the listing that chose it: a
call repairing several runs reaches the later ones minutes after that listing, and a repair another call
made meanwhile must be seen as that call's (waited for, not queued, counted or announced again). Two calls
that read the same failed run within one round trip of each other both see their enqueue answered with
the fresh ingest run; the API's answer does not say which of them queued it, so that window stays.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from splendor_api import BadRequest, Conflict, NotFound, OutcomeUnknown, ValidationFailed, models
from splendor_api.models import INGEST_ACTIVE, IngestStatus
from splendor_flows.engine.client_protocol import SyncApi
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.errors import DeadlineExceeded
from splendor_flows.engine.ingest import failure_payload, poll_ingest_runs
from splendor_flows.engine.polling import PollOptions, backoff
from splendor_flows.engine.report import Event
from splendor_flows.engine.scope import Step

# Bounds a caller may ask for: enough for a flaky backend, few enough that a broken object cannot keep
# ingestion busy.
MAX_ATTEMPTS_LIMIT = 10
MAX_RUNS_LIMIT = 100

# What the API answers when it will not queue a run again. Auth failures (401/403) are not among them:
# they concern the whole call, not one run, and stop it like any other step.
_REFUSALS = (BadRequest, Conflict, NotFound, ValidationFailed)


class Verdict(StrEnum):
    REPAIRED = "repaired"  # it had failed; this call queued it again and it is ready now
    READY = "ready"  # nothing of it is failed (never was, or an earlier call repaired it)
    PERMANENT = "permanent"  # an object failed with an error the API marks not repairable
    EXHAUSTED = "exhausted"  # it failed again after the allowed number of repairs
    REFUSED = "refused"  # the API would not queue it again
    NOT_INGESTED = "not_ingested"  # the run has no ingest runs: it was never handed to ingestion
    SKIPPED = "skipped"  # over the number of runs one call repairs


OK_VERDICTS = frozenset((Verdict.REPAIRED, Verdict.READY))


class IngestFailure(BaseModel):
    """A failed ingest run as the listing shows it."""

    ingest_run_id: str
    key: str | None
    status: str
    error_code: str | None
    error_message: str | None
    repairable: bool

    @classmethod
    def of(cls, run: models.IngestRun) -> "IngestFailure":
        return cls(
            ingest_run_id=run.ingest_run_id,
            key=run.key,
            status=run.status,
            error_code=run.error_code,
            error_message=run.error_message,
            repairable=_repairable(run),
        )

    def label(self) -> str:
        return f"{self.ingest_run_id} {self.error_code or self.status}"


class RunRepair(BaseModel):
    """What one call did about one sync run."""

    run_id: int
    verdict: Verdict
    reason: str
    # Repairs the run has had in all (Splendor's count), and how many this call made.
    attempts: int
    enqueued: int = 0
    # Failed when this call first looked, and still failed when it finished.
    failed_before: list[IngestFailure] = []
    failed_after: list[IngestFailure] = []
    ingest_run_ids: list[str] = []

    @property
    def ok(self) -> bool:
        return self.verdict in OK_VERDICTS

    def error_codes(self) -> list[str]:
        return sorted({f.error_code or f.status for f in self.failed_before + self.failed_after})


class RepairReport(BaseModel):
    source_key: str
    source_id: int
    max_attempts: int
    max_runs: int
    runs: list[RunRepair]

    def not_repaired(self) -> list[RunRepair]:
        return [r for r in self.runs if not r.ok]

    def headline(self) -> str:
        counts = Counter(r.verdict for r in self.runs)
        parts = ", ".join(f"{counts[v]} {v.value}" for v in Verdict if counts[v])
        return f"{self.source_key}: {len(self.runs)} run(s) looked at ({parts or 'no failed ingestion'})"


@dataclass(frozen=True)
class RunIngest:
    """The ingest runs of one sync run, as Splendor reports them now."""

    run_id: int
    current: list[models.IngestRun]
    # The most repairs any one object of the run has had: its superseded ingest runs.
    attempts: int

    @property
    def failed(self) -> list[models.IngestRun]:
        return [r for r in self.current if r.status not in INGEST_ACTIVE and r.status != IngestStatus.READY]

    @property
    def active(self) -> list[models.IngestRun]:
        return [r for r in self.current if r.status in INGEST_ACTIVE]


def _repairable(run: models.IngestRun) -> bool:
    # Only `failed` can be queued again; aborted and deleted runs were stopped on purpose. An API that
    # does not say (`repairable` absent) gets the request, and its answer decides (see REFUSED).
    if run.status != IngestStatus.FAILED:
        return False
    return run.lifecycle is None or run.lifecycle.repairable is not False


def _outcome(
    run_id: int, verdict: Verdict, reason: str, state: RunIngest, enqueued: int, before: list[IngestFailure]
) -> RunRepair:
    return RunRepair(
        run_id=run_id,
        verdict=verdict,
        reason=reason,
        attempts=state.attempts,
        enqueued=enqueued,
        failed_before=before,
        failed_after=[IngestFailure.of(r) for r in state.failed],
        ingest_run_ids=[r.ingest_run_id for r in state.current],
    )


async def read_ingest(api: SyncApi, source_id: int) -> dict[int, RunIngest]:
    """Every sync run of the source that has ingest runs, by run id, in one list call."""
    listed = await api.list_ingest_runs(source_id=source_id, include_non_current=True)
    current: dict[int, list[models.IngestRun]] = defaultdict(list)
    replaced: dict[int, Counter[str]] = defaultdict(Counter)
    for run in listed:
        if run.connector_run_id is None:  # uploads and logs: not a sync's output
            continue
        if run.status == IngestStatus.SUPERSEDED:
            replaced[run.connector_run_id][run.key or run.ingest_run_id] += 1
        else:
            current[run.connector_run_id].append(run)
    return {
        run_id: RunIngest(run_id, runs, max(replaced[run_id].values(), default=0))
        for run_id, runs in current.items()
    }


async def _read_run(ctx: SourceContext, source_id: int, run_id: int) -> RunIngest | None:
    return (await read_ingest(ctx.api, source_id)).get(run_id)


def needs_repair(state: RunIngest) -> bool:
    """A failed object, or a repair in flight (an earlier call queued it and stopped before the end)."""
    return bool(state.failed) or (state.attempts > 0 and bool(state.active))


class FailedRun(BaseModel):
    """A sync run whose ingestion needs repair, as the listing shows it."""

    run_id: int
    attempts: int
    failures: list[IngestFailure]
    # Repairs queued by an earlier call and still under way.
    in_flight: int


def failed_runs(states: dict[int, RunIngest]) -> list[FailedRun]:
    """The runs that need repair, newest first: what a repair call looks at, and in that order."""
    return [
        FailedRun(
            run_id=run_id,
            attempts=state.attempts,
            failures=[IngestFailure.of(r) for r in state.failed],
            in_flight=len(state.active),
        )
        for run_id, state in sorted(states.items(), reverse=True)
        if needs_repair(state)
    ]


async def wait_in_flight(
    ctx: SourceContext, source_id: int, run_id: int, state: RunIngest | None, poll: PollOptions
) -> RunIngest | None:
    """Wait until nothing of the run is in flight, as Splendor lists it, and return it as listed then.

    One poll deadline bounds the whole wait, not each poll: the listing can show new ingest runs after
    a poll (another call queued a repair) or keep showing ones that polling saw end (a listing that lags
    behind), and either could otherwise keep the wait going for ever.
    """
    began = ctx.clock.monotonic()
    lagged = 0
    while state is not None and state.active:
        waiting = sorted(r.ingest_run_id for r in state.active)
        late = DeadlineExceeded(
            Step.REPAIR,
            ctx.scope.source_key,
            f"run {run_id}: ingest runs {', '.join(waiting)} still in flight "
            f"after {poll.deadline_seconds:.0f} s",
            "they go on in Splendor; repair the run again later to wait for them (a repair in flight is "
            "waited for, never queued twice)",
        )
        left = poll.deadline_seconds - (ctx.clock.monotonic() - began)
        if left <= 0:
            raise late
        try:
            # The poll gets what is left of the wait's deadline, not a fresh one of its own.
            ended = await poll_ingest_runs(ctx, waiting, poll.model_copy(update={"deadline_seconds": left}))
        except DeadlineExceeded as exc:
            raise late from exc
        state = await _read_run(ctx, source_id, run_id)
        if state is not None and {r.ingest_run_id for r in state.active} <= ended.keys():
            # The listing still shows in flight what polling saw end: ask it again after a pause.
            await ctx.clock.sleep(backoff(poll, lagged))
            lagged += 1
    return state


async def repair_run(
    ctx: SourceContext,
    source_id: int,
    run_id: int,
    *,
    max_attempts: int,
    poll: PollOptions,
) -> RunRepair:
    """Queue the failed objects of one run again until they are ready or cannot be repaired.

    Each pass waits for what is in flight, then either ends or makes one enqueue that the API acted on
    (an attempt Splendor then counts), so `max_attempts + 1` passes always suffice; the loop bound only
    guards against an API that breaks its own rule.
    """
    before: list[IngestFailure] | None = None
    enqueued = 0
    # Read now, not taken from the listing that chose the run (see the module's docstring).
    state = await _read_run(ctx, source_id, run_id)
    for _ in range(max_attempts + 2):
        # What is in flight (this call's repair, or one another call queued) is waited for, never
        # queued again.
        state = await wait_in_flight(ctx, source_id, run_id, state, poll)
        if state is None:
            return RunRepair(
                run_id=run_id,
                verdict=Verdict.NOT_INGESTED,
                reason="the run has no ingest runs: it was never handed to ingestion (sync-source does that)",
                attempts=0,
            )
        failed = [IngestFailure.of(r) for r in state.failed]
        if before is None:
            before = failed
        verdict: tuple[Verdict, str] | None = None
        retryable = [f for f in failed if f.repairable]
        if not failed:
            if enqueued:
                ctx.report.event(
                    Event.INGEST_READY,
                    {"run_id": run_id, "ingest_run_ids": [r.ingest_run_id for r in state.current]},
                )
                verdict = Verdict.REPAIRED, f"ready after {enqueued} repair(s)"
            else:
                earlier = f" (repaired {state.attempts} time(s) earlier)" if state.attempts else ""
                verdict = Verdict.READY, f"nothing failed{earlier}"
        elif not retryable:
            codes = ", ".join(f.label() for f in failed)
            done = f"{enqueued} repair(s) made, but " if enqueued else ""
            verdict = Verdict.PERMANENT, f"{done}the API marks these not repairable: {codes}"
        elif state.attempts >= max_attempts:
            codes = ", ".join(f.label() for f in retryable)
            verdict = Verdict.EXHAUSTED, f"still failed after {state.attempts} repair(s) (the limit): {codes}"
        if verdict is not None:
            if enqueued and verdict[0] not in OK_VERDICTS:
                # This call's repairs failed again: the same news as a failed ingestion after a sync.
                payload, _ = failure_payload(run_id, {r.ingest_run_id: r for r in state.failed})
                ctx.report.event(Event.INGEST_FAILED, payload | {"repair_attempts": state.attempts})
            return _outcome(run_id, *verdict, state, enqueued, before)
        try:
            answer = await ctx.api.enqueue_ingest(source_id, run_id)
        except OutcomeUnknown:
            # The enqueue may have happened: what Splendor shows now decides the next pass, and a new
            # superseded run says it did.
            attempts = state.attempts
            state = await _read_run(ctx, source_id, run_id)
            enqueued += state is not None and state.attempts > attempts
            continue
        except _REFUSALS as exc:
            reason = f"the API refused to queue it again: {exc}"
            return _outcome(run_id, Verdict.REFUSED, reason, state, enqueued, before)
        kept = {r.ingest_run_id for r in answer} & {f.ingest_run_id for f in retryable}
        if kept:
            reason = f"the API kept {', '.join(sorted(kept))} failed instead of queueing it again"
            return _outcome(run_id, Verdict.REFUSED, reason, state, enqueued, before)
        enqueued += 1
        ctx.report.log("info", f"Run {run_id}: repair {state.attempts + 1} queued {len(retryable)} object(s)")
        ctx.report.event(
            Event.INGEST_ENQUEUED,
            {
                "source_id": source_id,
                "run_id": run_id,
                "ingest_run_ids": [r.ingest_run_id for r in answer],
                "repair_attempt": state.attempts + 1,
            },
        )
        state = await _read_run(ctx, source_id, run_id)
    assert state is not None
    return _outcome(
        run_id,
        Verdict.EXHAUSTED,
        f"still not ready after {max_attempts + 2} passes",
        state,
        enqueued,
        before or [],
    )


async def repair_source(
    ctx: SourceContext,
    source_id: int,
    *,
    run_id: int | None = None,
    max_attempts: int = 3,
    max_runs: int = 10,
    poll: PollOptions,
) -> RepairReport:
    """Repair one run (`run_id`) or the failed runs of the source, newest first, at most `max_runs`."""
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValueError(f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, not {max_attempts}")
    if not 1 <= max_runs <= MAX_RUNS_LIMIT:
        raise ValueError(f"max_runs must be between 1 and {MAX_RUNS_LIMIT}, not {max_runs}")
    states = await read_ingest(ctx.api, source_id)
    targets = [run_id] if run_id is not None else [f.run_id for f in failed_runs(states)]
    results: list[RunRepair] = []
    for index, target in enumerate(targets):
        if index >= max_runs:
            results.append(
                RunRepair(
                    run_id=target,
                    verdict=Verdict.SKIPPED,
                    reason=f"over the limit of {max_runs} run(s) per call: repair again for the rest",
                    attempts=states[target].attempts,
                    failed_before=[IngestFailure.of(r) for r in states[target].failed],
                )
            )
            continue
        ctx.report.step(Step.REPAIR, target)
        results.append(await repair_run(ctx, source_id, target, max_attempts=max_attempts, poll=poll))
    report = RepairReport(
        source_key=ctx.scope.source_key,
        source_id=source_id,
        max_attempts=max_attempts,
        max_runs=max_runs,
        runs=results,
    )
    ctx.report.log("warning" if report.not_repaired() else "info", report.headline())
    return report
