"""In-memory stand-ins for the engine's collaborators: a clock that only moves when slept on, and a
Splendor API that keeps runs and ingest runs in dicts and answers from scripts."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from splendor_api import (
    Conflict,
    Forbidden,
    NotFound,
    OutcomeUnknown,
    ResponseInvalid,
    RetriesExhausted,
    SplendorError,
    Unauthorized,
    Unavailable,
    UpstreamError,
    ValidationFailed,
    models,
)
from splendor_api.models import RUN_TERMINAL, IngestStatus, RunStatus
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.report import RecordingReporter
from splendor_flows.engine.run_records import RunRecords

EPOCH = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
# Ingest error codes the fake API knows, and whether it marks each repairable.
REPAIRABLE_CODES = {"parse_failed": True, "unsupported_format": False}


class FakeClock:
    """Time that moves only when the code under test sleeps; `now()` counts from `epoch`."""

    def __init__(self, epoch: datetime = EPOCH) -> None:
        self.epoch = epoch
        self.t = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=self.t)


@dataclass(frozen=True)
class FakeScope:
    api_base: str = "http://splendor.test"
    tenant: str = "acme"
    source_key: str = "stripe-prod"
    sync_id: str = "sync-1"


# Raised by `start_sync` after the run was created: the answer was lost on the way back.
class Lost(Exception):
    pass


LOST = Lost()


def outcome_unknown(route: str = "start_sync") -> OutcomeUnknown:
    return OutcomeUnknown(method="POST", path="/x", route=route, cause=httpx.ReadTimeout("read timed out"))


def shed(retry_after: float | None = None) -> Unavailable:
    return Unavailable(status=503, method="POST", path="/x", detail="shedding load", retry_after=retry_after)


def exhausted(last: SplendorError | None = None) -> RetriesExhausted:
    return RetriesExhausted(
        method="POST", path="/x", route="refresh_run", attempts=6, elapsed=30.0, last_error=last or shed()
    )


def malformed() -> ResponseInvalid:
    return ResponseInvalid(
        method="POST",
        path="/x",
        route="refresh_run",
        status=200,
        reason="missing run.status",
        fields=["status"],
    )


def api_error(status: int, detail: str = "nope") -> SplendorError:
    cls = {401: Unauthorized, 403: Forbidden, 404: NotFound, 422: ValidationFailed, 502: UpstreamError}[
        status
    ]
    return cls(status=status, method="POST", path="/v1/admin/airbyte-runs/1/refresh", detail=detail)


@dataclass
class FakeApi:
    """Runs follow `run_scripts` (one status list per started run, the last status repeating)."""

    clock: FakeClock
    source_id: int = 12
    run_scripts: list[list[str]] = field(default_factory=list)
    records: int | None = 42
    connected: bool = True
    landed_data: bool = True
    ingest_script: list[str] = field(default_factory=lambda: [IngestStatus.QUEUED, IngestStatus.READY])
    # Objects a run lands (one ingest run each), and the error code each new ingest run fails with,
    # in order of creation (None: it follows `ingest_script`). Codes in REPAIRABLE_CODES say whether
    # the API marks them repairable.
    ingest_keys: list[str] = field(default_factory=lambda: ["run.jsonl"])
    ingest_errors: list[str | None] = field(default_factory=list)
    # False: enqueueing a run again returns its failed ingest runs unchanged (an API that will not repair).
    requeues: bool = True
    # False: ingest runs carry no `lifecycle` (an API that does not say what is repairable).
    reports_repairable: bool = True
    # Method name → exceptions to raise, in order, before answering normally (None: answer this time).
    failures: dict[str, list[BaseException | None]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    # False: the API has no list-runs route (it answers 404, as the contract allows).
    can_list_runs: bool = True
    runs: dict[int, models.ConnectorRun] = field(default_factory=dict)
    ingest_runs: dict[str, models.IngestRun] = field(default_factory=dict)
    _scripts: dict[int | str, list[str]] = field(default_factory=dict)
    repairs: int = 0

    def _fail(self, method: str) -> None:
        self.calls[method] += 1
        queue = self.failures.get(method)
        if queue:
            error = queue.pop(0)
            if error is not None and error is not LOST:
                raise error

    def _next_is_lost(self, method: str) -> bool:
        queue = self.failures.get(method)
        return bool(queue) and queue is not None and queue[0] is LOST

    def _advance(self, run_id: int) -> models.ConnectorRun:
        script = self._scripts[run_id]
        status = script.pop(0) if len(script) > 1 else script[0]
        run = self.runs[run_id]
        done = status in RUN_TERMINAL
        self.runs[run_id] = run.model_copy(
            update={
                "status": status,
                "completed_at": self.clock.now() if done else None,
                "records_synced": self.records if status == RunStatus.SUCCEEDED else None,
                "error_message": "connector exited with code 1" if status == RunStatus.FAILED else None,
            }
        )
        return self.runs[run_id]

    def add_run(self, statuses: Sequence[str]) -> models.ConnectorRun:
        """A run started elsewhere (schedule, console, an earlier pipeline)."""
        run_id = len(self.runs) + 1
        # Refreshes answer the statuses after the current one.
        self._scripts[run_id] = list(statuses[1:]) or [statuses[0]]
        self.runs[run_id] = models.ConnectorRun(
            run_id=run_id, source_id=self.source_id, status=statuses[0], created_at=self.clock.now()
        )
        return self.runs[run_id]

    def in_flight(self) -> models.ConnectorRun | None:
        return next((r for r in self.runs.values() if r.status not in RUN_TERMINAL), None)

    async def start_sync(self, source_id: int, trigger: str = "manual") -> models.ConnectorRun:
        lost = self._next_is_lost("start_sync")
        self._fail("start_sync")
        if not self.connected:
            raise Conflict(status=409, method="POST", path="/x", detail={"code": "no_connection"})
        busy = self.in_flight()
        if busy is not None:
            detail = {"code": "sync_in_progress", "run_id": busy.run_id}
            raise Conflict(status=409, method="POST", path="/x", detail=detail)
        script = self.run_scripts.pop(0) if self.run_scripts else [RunStatus.PENDING, RunStatus.SUCCEEDED]
        run = self.add_run([RunStatus.PENDING, *script])
        if lost:
            raise outcome_unknown()
        return run

    async def get_run(self, run_id: int) -> models.ConnectorRun:
        self._fail("get_run")
        return self.runs[run_id]

    async def list_runs(self, source_id: int, limit: int = 20) -> list[models.ConnectorRun]:
        self._fail("list_runs")
        if not self.can_list_runs:
            raise api_error(404, "Not Found")
        mine = [r for r in self.runs.values() if r.source_id == source_id]
        return sorted(mine, key=lambda r: r.run_id, reverse=True)[:limit]

    async def refresh_run(self, run_id: int) -> models.ConnectorRun:
        self._fail("refresh_run")
        if run_id not in self.runs:
            raise api_error(404, "run not found")
        return self._advance(run_id)

    def _ingest_for(self, run_id: int) -> list[models.IngestRun]:
        return [
            r
            for r in self.ingest_runs.values()
            if r.connector_run_id == run_id and r.status != IngestStatus.SUPERSEDED
        ]

    def _new_ingest(self, source_id: int, run_id: int, ingest_id: str, key: str) -> None:
        code = self.ingest_errors.pop(0) if self.ingest_errors else None
        self._scripts[ingest_id] = (
            [IngestStatus.QUEUED, IngestStatus.FAILED] if code else list(self.ingest_script)
        )
        self.ingest_runs[ingest_id] = models.IngestRun(
            ingest_run_id=ingest_id,
            tenant_id="acme",
            dataset_id="payments",
            source_id=source_id,
            status=self._scripts[ingest_id][0],
            connector_run_id=run_id,
            key=key,
            error_code=code,
            lifecycle=models.IngestLifecycle(repairable=REPAIRABLE_CODES.get(code or "", False))
            if self.reports_repairable
            else None,
        )

    async def enqueue_ingest(self, source_id: int, run_id: int | None = None) -> list[models.IngestRun]:
        lost = self._next_is_lost("enqueue_ingest")
        self._fail("enqueue_ingest")
        if not self.landed_data:
            raise Conflict(status=409, method="POST", path="/x", detail={"code": "no_landed_data"})
        assert run_id is not None
        existing = self._ingest_for(run_id)
        if not existing:
            for n, key in enumerate(self.ingest_keys):
                self._new_ingest(source_id, run_id, f"ing_{run_id}" + (f"_{n}" if n else ""), key)
        elif self.requeues:
            # The contract's repair rule: a repairable failure is queued afresh, the failed run superseded.
            for old in existing:
                if old.status == IngestStatus.FAILED and old.lifecycle and old.lifecycle.repairable:
                    self.ingest_runs[old.ingest_run_id] = old.model_copy(
                        update={"status": IngestStatus.SUPERSEDED}
                    )
                    self.repairs += 1
                    self._new_ingest(source_id, run_id, f"{old.ingest_run_id}_r{self.repairs}", old.key or "")
        existing = self._ingest_for(run_id)
        if lost:
            raise outcome_unknown("enqueue_ingest")
        return existing

    async def list_ingest_runs(
        self,
        *,
        source_id: int | None = None,
        dataset_id: str | None = None,
        status: str | None = None,
        include_non_current: bool = False,
    ) -> list[models.IngestRun]:
        self._fail("list_ingest_runs")
        return [
            r
            for r in self.ingest_runs.values()
            if r.source_id == source_id and (include_non_current or r.status != IngestStatus.SUPERSEDED)
        ]

    async def get_ingest_run(self, ingest_run_id: str) -> models.IngestRun:
        self._fail("get_ingest_run")
        if ingest_run_id not in self.ingest_runs:
            raise api_error(404, "ingest run not found")
        script = self._scripts[ingest_run_id]
        status = script.pop(0) if len(script) > 1 else script[0]
        run = self.ingest_runs[ingest_run_id].model_copy(update={"status": status})
        self.ingest_runs[ingest_run_id] = run
        return run


@dataclass
class Harness:
    clock: FakeClock
    api: FakeApi
    report: RecordingReporter
    ctx: SourceContext


def harness(
    history: RunHistory | None = None, run_records: RunRecords | None = None, **api_options: object
) -> Harness:
    clock = FakeClock()
    api = FakeApi(clock, **api_options)  # type: ignore[arg-type]
    report = RecordingReporter()
    ctx = SourceContext(
        api=api, scope=FakeScope(), report=report, clock=clock, history=history, records=run_records
    )
    return Harness(clock, api, report, ctx)
