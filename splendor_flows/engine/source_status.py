"""One row per source of a tenant: who schedules it and when next, its last sync run, its age against its
freshness window, the ingest state of that run, failures in a row, and any wait open on a person.

Reading Splendor costs two calls for the tenant (the source list and the current ingest runs) and two
per Airbyte source (the source's Airbyte state, for its provider and Splendor schedule; its latest
runs); hosted sources cost nothing more. Everything here reads: no call changes anything. The Prefect
side (schedule groups, paused runs) is read elsewhere and handed in as `PrefectView`, so this module
has no Prefect import and its rows can be built and tested from plain values.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from splendor_api import SplendorClient, SplendorError, models
from splendor_flows.engine.freshness import IntervalCache, Window, freshness_window, is_stale, next_fire
from splendor_flows.specs.source import SourceSpec

# Runs read per source: the newest first, so failures in a row are counted up to this many.
RUNS_READ = 20
CALLS_PER_TENANT = 2
CALLS_PER_AIRBYTE_SOURCE = 2


class Scheduler(StrEnum):
    PREFECT = "prefect"
    SPLENDOR = "splendor"
    NONE = "none"


@dataclass(frozen=True)
class PrefectSchedule:
    """A source's membership of a schedule group of the `sync-scheduled` deployment."""

    cron: str
    timezone: str | None
    active: bool


@dataclass(frozen=True)
class PersonWait:
    """A flow run paused or suspended until a person answers its form."""

    kind: str  # "oauth consent" or "classification review"
    flow_run_id: str
    since: datetime | None
    link: str
    # The source key the run's parameters name, when they do: a Prefect server may serve several
    # tenants, whose source ids overlap, so a wait counts only for the source of that key.
    source_key: str | None = None


@dataclass(frozen=True)
class PrefectView:
    """What Prefect knows of the tenant's sources: their schedule groups and the runs waiting on a
    person, by source id (a wait's pause key names the Splendor source id)."""

    schedules: dict[str, PrefectSchedule] = field(default_factory=dict)
    waits: dict[int, list[PersonWait]] = field(default_factory=dict)


@dataclass(frozen=True)
class SplendorSource:
    source: models.Source
    airbyte: models.AirbyteState | None
    runs: list[models.ConnectorRun]
    # A source whose details could not be read: the reason, and the row says so.
    error: str | None = None


@dataclass(frozen=True)
class SplendorView:
    sources: list[SplendorSource]
    # Current ingest runs by Splendor connector run id.
    ingest: dict[int, list[models.IngestRun]]


async def _details(client: SplendorClient, source: models.Source) -> SplendorSource:
    if source.source_type != "airbyte":
        return SplendorSource(source, None, [])
    try:
        airbyte, runs = await asyncio.gather(
            client.get_airbyte_source(source.source_id), client.list_runs(source.source_id, RUNS_READ)
        )
    except SplendorError as exc:
        # One unreadable source must not hide the others: its row carries the failure.
        return SplendorSource(source, None, [], error=str(exc))
    return SplendorSource(source, airbyte.airbyte, runs)


async def read_splendor(client: SplendorClient) -> SplendorView:
    """The tenant's sources, their Airbyte state and latest runs, and the current ingest runs. The
    client's gate bounds the calls in flight; this issues them all and lets the gate pace them."""
    sources, ingest_runs = await asyncio.gather(client.list_sources(), client.list_ingest_runs())
    details = await asyncio.gather(*(_details(client, s) for s in sources))
    ingest: dict[int, list[models.IngestRun]] = {}
    for item in ingest_runs:
        if item.connector_run_id is not None:
            ingest.setdefault(item.connector_run_id, []).append(item)
    return SplendorView(list(details), ingest)


@dataclass(frozen=True)
class LastRun:
    run_id: int
    status: str
    at: datetime | None
    records: int | None


@dataclass
class SourceRow:
    source_key: str
    provider: str
    scheduler: Scheduler
    cron: str | None = None
    timezone: str | None = None
    schedule_active: bool = True
    next_run: datetime | None = None
    last_run: LastRun | None = None
    last_success_at: datetime | None = None
    window: Window | None = None
    age_seconds: float | None = None
    stale: bool = False
    ingest: str = "-"
    failures_in_row: int = 0
    # True when every run read failed: there may be more failures than counted.
    failures_capped: bool = False
    credentials: str = "-"
    waits: list[PersonWait] = field(default_factory=list)
    in_splendor: bool = True
    # None without a connectors file; False marks a source Splendor has and the file does not.
    in_file: bool | None = None
    error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "source_key": self.source_key,
            "provider": self.provider,
            "scheduler": self.scheduler.value,
            "cron": self.cron,
            "timezone": self.timezone,
            "schedule_active": self.schedule_active,
            "next_run": when(self.next_run),
            "last_run": None
            if self.last_run is None
            else {
                "run_id": self.last_run.run_id,
                "status": self.last_run.status,
                "at": when(self.last_run.at),
                "records": self.last_run.records,
            },
            "last_success_at": when(self.last_success_at),
            "age_seconds": self.age_seconds,
            "window_seconds": self.window.seconds if self.window else None,
            "window_basis": self.window.basis if self.window else None,
            "stale": self.stale,
            "ingest": self.ingest,
            "failures_in_row": self.failures_in_row,
            "failures_capped": self.failures_capped,
            "credentials": self.credentials,
            "waits": [
                {"kind": w.kind, "flow_run_id": w.flow_run_id, "since": when(w.since), "link": w.link}
                for w in self.waits
            ],
            "in_splendor": self.in_splendor,
            "in_file": self.in_file,
            "error": self.error,
            "problems": self.problems,
            "needs_attention": self.needs_attention,
        }


def _utc(value: datetime | None) -> datetime | None:
    # An API time without an offset is read as UTC, so it compares with `now`.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _run_time(run: models.ConnectorRun) -> datetime | None:
    """When the run ended (or, still going, when it started or was created)."""
    return _utc(run.completed_at or run.started_at or run.created_at)


def ingest_state(runs: list[models.IngestRun]) -> str:
    """One word for the ingest runs of one sync run: failed wins, then in progress, then ready."""
    if not runs:
        return "none"
    if any(r.is_failed for r in runs):
        return "failed"
    if not all(r.is_ready for r in runs):
        return "in progress"
    return "ready"


def _problems(row: SourceRow) -> list[str]:
    found: list[str] = []
    if row.error:
        found.append(f"could not be read: {row.error}")
    if not row.in_splendor:
        found.append("in the connectors file but not in Splendor")
    if row.in_file is False:
        found.append("in Splendor but not in the connectors file")
    if row.in_splendor and row.credentials not in ("ready", "-"):
        found.append(f"credentials {row.credentials}")
    if not row.schedule_active:
        found.append("its schedule group is paused")
    if row.stale and row.window is not None:
        found.append(f"stale: no successful sync within {row.window.seconds:g} s ({row.window.basis})")
    if row.failures_in_row:
        more = "+" if row.failures_capped else ""
        found.append(f"{row.failures_in_row}{more} failed run(s) in a row")
    if row.ingest == "failed":
        found.append("ingestion of the last run failed")
    found.extend(f"waiting on a person: {w.kind}" for w in row.waits)
    return found


def _schedule_of(
    key: str, airbyte: models.AirbyteState | None, prefect: PrefectView, spec: SourceSpec | None
) -> tuple[Scheduler, str | None, str | None, bool]:
    group = prefect.schedules.get(key)
    if group is not None:
        return Scheduler.PREFECT, group.cron, group.timezone, group.active
    if airbyte is not None and airbyte.schedule_type == "cron" and airbyte.cron_expression:
        return Scheduler.SPLENDOR, airbyte.cron_expression, "UTC", True
    if airbyte is None and spec is not None and spec.schedule is not None:
        # Only for a file source Splendor does not have yet: what it will be once applied.
        runner = Scheduler.SPLENDOR if spec.schedule.runner == "splendor" else Scheduler.PREFECT
        return runner, spec.schedule.cron, spec.schedule.timezone, True
    return Scheduler.NONE, None, None, True


def _failures_in_row(runs: list[models.ConnectorRun]) -> tuple[int, bool]:
    count = 0
    for run in runs:
        if run.status in (models.RunStatus.FAILED, models.RunStatus.CANCELLED):
            count += 1
        elif run.is_terminal:
            break
        # A run still going neither breaks nor extends the streak.
    return count, bool(runs) and count == len(runs) and len(runs) >= RUNS_READ


def build_rows(
    splendor: SplendorView,
    prefect: PrefectView,
    threshold_seconds: float,
    now: datetime,
    specs: Iterable[SourceSpec] | None = None,
) -> list[SourceRow]:
    """Every source's row, those needing attention first (then by key). With `specs` (a connectors
    file) its sources Splendor lacks get a row too, and Splendor's sources it lacks are marked."""
    now = now.astimezone(UTC)
    intervals = IntervalCache(now)
    by_key = {s.source_key: s for s in specs} if specs is not None else None
    rows: list[SourceRow] = []
    for item in splendor.sources:
        key = item.source.source_key
        spec = by_key.get(key) if by_key is not None else None
        provider = (
            (item.airbyte.provider_key or item.airbyte.airbyte_source_definition_name or "airbyte")
            if item.airbyte is not None
            else item.source.source_type
        )
        scheduler, cron, timezone, active = _schedule_of(key, item.airbyte, prefect, None)
        row = SourceRow(
            source_key=key,
            provider=provider,
            scheduler=scheduler,
            cron=cron,
            timezone=timezone,
            schedule_active=active,
            credentials=item.airbyte.credential_status if item.airbyte is not None else "-",
            waits=[w for w in prefect.waits.get(item.source.source_id, []) if w.source_key in (None, key)],
            in_file=None if by_key is None else spec is not None,
            error=item.error,
        )
        if cron and active:
            row.next_run = next_fire(cron, timezone, now)
        if item.source.source_type == "airbyte" and item.error is None:
            _judge_runs(row, item, splendor, threshold_seconds, intervals, now)
        rows.append(row)
    if by_key is not None:
        known = {item.source.source_key for item in splendor.sources}
        for key, spec in by_key.items():
            if key in known:
                continue
            scheduler, cron, timezone, _ = _schedule_of(key, None, PrefectView(), spec)
            rows.append(
                SourceRow(
                    source_key=key,
                    provider=spec.provider_key or spec.source_definition_id or "-",
                    scheduler=scheduler,
                    cron=cron,
                    timezone=timezone,
                    in_splendor=False,
                    in_file=True,
                )
            )
    for row in rows:
        row.problems = _problems(row)
    return sorted(rows, key=lambda r: (not r.needs_attention, r.source_key))


def _judge_runs(
    row: SourceRow,
    item: SplendorSource,
    splendor: SplendorView,
    threshold_seconds: float,
    intervals: IntervalCache,
    now: datetime,
) -> None:
    runs = item.runs
    if runs:
        last = runs[0]
        row.last_run = LastRun(last.run_id, last.status, _run_time(last), last.records_synced)
        if last.status == models.RunStatus.SUCCEEDED:
            row.ingest = ingest_state(splendor.ingest.get(last.run_id, []))
    success = next((r for r in runs if r.status == models.RunStatus.SUCCEEDED), None)
    row.last_success_at = _run_time(success) if success is not None else None
    # A paused schedule runs nothing: such a source is judged as one without a schedule.
    cron = row.cron if row.schedule_active else None
    row.window = freshness_window(cron, row.timezone, threshold_seconds, intervals)
    if row.last_success_at is not None:
        row.age_seconds = (now - row.last_success_at).total_seconds()
    # Never synced (within the runs read): its age counts from its creation.
    since = _utc(item.source.created_at) if success is None and len(runs) < RUNS_READ else None
    row.stale = is_stale(row.last_success_at, since, row.window, now)
    row.failures_in_row, row.failures_capped = _failures_in_row(runs)
