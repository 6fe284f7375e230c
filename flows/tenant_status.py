"""tenant_status: the tenant at a glance, published as a Prefect artifact (and printed by
`splendor-flows status`, which reads the same way).

One row per source: who schedules it (a schedule group of `sync-scheduled`, or Splendor's own
scheduler) and its next run, the last sync run, its age against its freshness window
(engine/freshness.py), the ingest state of that run, failures in a row, and any run waiting on a
person (OAuth consent, classification review) with the link to answer it. Sources needing attention
come first.

It only reads. Splendor: two calls for the tenant and two per Airbyte source (engine/source_status.py),
at most `STATUS_MAX_CONCURRENCY` in flight and never more than the tenant's API limit (the global
concurrency limit `splendor-api-<tenant>`). Prefect: the deployment and its schedules, the paused and
suspended runs, and that limit. The deployment writes nothing but its artifacts.

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel

from splendor_api import SplendorClient, SplendorConfig
from splendor_api.client import KEEPALIVE_CONNECTIONS
from splendor_flows.engine.freshness import FRESHNESS_AUTOMATION, automation_threshold
from splendor_flows.engine.source_status import (
    LastRun,
    PersonWait,
    PrefectSchedule,
    PrefectView,
    Scheduler,
    SourceRow,
    build_rows,
    read_splendor,
)
from splendor_flows.fleet.run import DEFAULT_CONCURRENCY_LIMIT, fleet_slots, limit_name
from splendor_flows.orchestration.automations import load as load_automations
from splendor_flows.orchestration.runtime import current_runtime
from splendor_flows.orchestration.source_schedules import read_schedules
from splendor_flows.orchestration.splendor_clients import load_config
from splendor_flows.specs.connectors_file import load_connectors

# A share of the tenant's API limit, as a schedule tick takes: status runs beside fleets and ticks.
# No more than the client keeps idle connections (KEEPALIVE_CONNECTIONS): above that every burst opens
# connections and closes them after, which cost about 8% more CPU per call in a 500-source read.
STATUS_MAX_CONCURRENCY = KEEPALIVE_CONNECTIONS
# Waiting runs read at most: more than this many open waits is itself the answer.
MAX_WAITS_READ = 200
ARTIFACT_KEY = "splendor-tenant-status"
_PAUSE_KEY = re.compile(r"^(oauth|classify)-(\d+)$")
_WAIT_KINDS = {"oauth": "oauth consent", "classify": "classification review"}


def _link(flow_run_id: str) -> str:
    """Where a person answers the run's form: its page in the Prefect UI, or, without a UI URL, the
    command that shows the run."""
    ui = PREFECT_UI_URL.value()
    if ui:
        return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}"
    return f"prefect flow-run inspect {flow_run_id}"


async def read_prefect() -> PrefectView:
    """The schedule groups of `sync-scheduled`, by source key, and the runs paused or suspended on a
    person, by the Splendor source id their pause key names (`oauth-<id>`, `classify-<id>`)."""
    schedules = await read_schedules()
    by_key = {
        key: PrefectSchedule(cron, group.timezone, group.active)
        for group in schedules.groups
        for key in group.source_keys
        if (cron := group.cron_of(key))
    }
    async with get_client() as client:
        paused = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            limit=MAX_WAITS_READ,
        )
    waits: dict[int, list[PersonWait]] = {}
    for run in paused:
        details = run.state.state_details if run.state is not None else None
        match = _PAUSE_KEY.match(details.pause_key or "") if details is not None else None
        if match is None or run.state is None:
            continue
        spec = (run.parameters or {}).get("spec")
        key = spec.get("source_key") if isinstance(spec, dict) else None
        waits.setdefault(int(match.group(2)), []).append(
            PersonWait(
                kind=_WAIT_KINDS[match.group(1)],
                flow_run_id=str(run.id),
                since=run.state.timestamp,
                link=_link(str(run.id)),
                source_key=key if isinstance(key, str) else None,
            )
        )
    return PrefectView(by_key, waits)


async def api_limit(tenant: str) -> tuple[str, int | None]:
    """The name of the tenant's global concurrency limit, and its slots when it is active."""
    name = limit_name(DEFAULT_CONCURRENCY_LIMIT, tenant) or ""
    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return name, None
    return name, limit.limit if limit.active else None


async def freshness_threshold() -> float:
    """The staleness automation's window: the one on the Prefect server when it is there (an operator
    may have applied it with another `--within`), else the one deployments/automations.yaml ships."""
    async with get_client() as client:
        live = await client.read_automations_by_name(FRESHNESS_AUTOMATION)
    for automation in live:
        within = getattr(automation.trigger, "within", None)
        if isinstance(within, timedelta) and within.total_seconds() > 0:
            return within.total_seconds()
    return automation_threshold(load_automations())


@dataclass(frozen=True)
class StatusReport:
    tenant: str
    at: datetime
    rows: list[SourceRow]
    in_flight: int
    threshold_seconds: float

    @property
    def attention(self) -> list[SourceRow]:
        return [r for r in self.rows if r.needs_attention]

    def headline(self) -> str:
        return f"{len(self.rows)} source(s) of tenant {self.tenant}, {len(self.attention)} need attention"

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "at": self.at.isoformat(),
            "sources": len(self.rows),
            "need_attention": len(self.attention),
            "threshold_seconds": self.threshold_seconds,
            "max_requests_in_flight": self.in_flight,
            "rows": [r.as_json() for r in self.rows],
        }


async def collect(
    config: SplendorConfig, in_flight: int, connectors_file: str | None = None, now: datetime | None = None
) -> StatusReport:
    """Read Splendor and Prefect and build the rows, with at most `in_flight` Splendor calls at once."""
    specs = load_connectors(connectors_file).sources if connectors_file else None
    threshold = await freshness_threshold()
    prefect = await read_prefect()
    tuned = config.model_copy(update={"max_concurrency": in_flight})
    async with SplendorClient(tuned, transport=current_runtime().transport) as client:
        splendor = await read_splendor(client)
    at = now or datetime.now(UTC)
    rows = build_rows(splendor, prefect, threshold, at, specs)
    return StatusReport(config.tenant, at, rows, in_flight, threshold)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%m-%d %H:%M") if value is not None else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m"


def _schedule(row: SourceRow) -> str:
    if row.scheduler is Scheduler.NONE:
        return "-"
    if not row.schedule_active:
        return f"{row.scheduler.value} (paused)"
    return f"{row.scheduler.value} {_when(row.next_run)}"


def _last_run(last: LastRun | None) -> str:
    if last is None:
        return "-"
    records = "" if last.records is None else f", {last.records} rec"
    return f"{last.status} {_when(last.at)}{records}"


def _freshness(row: SourceRow) -> str:
    if row.window is None:
        return "-"
    verdict = "STALE" if row.stale else "ok"
    return f"{verdict} {_duration(row.age_seconds)} / {_duration(row.window.seconds)}"


def _source(row: SourceRow) -> str:
    if not row.in_splendor:
        return f"{row.source_key} (not in Splendor)"
    if row.in_file is False:
        return f"{row.source_key} (not in file)"
    return row.source_key


def table_rows(report: StatusReport) -> list[dict[str, str]]:
    """The report as table cells (times in UTC), the same for the terminal and the artifact."""
    return [
        {
            "source": _source(row),
            "provider": row.provider,
            "scheduler, next run": _schedule(row),
            "last sync run": _last_run(row.last_run),
            "age / window": _freshness(row),
            "ingest": row.ingest,
            "fails": f"{row.failures_in_row}{'+' if row.failures_capped else ''}",
            "waiting on": "; ".join(f"{w.kind}: {w.link}" for w in row.waits) or "-",
            "problems": "; ".join(row.problems) or "-",
        }
        for row in report.rows
    ]


class StatusSummary(BaseModel):
    tenant: str
    sources: int
    need_attention: int
    attention: list[str]


@flow(name="tenant-status", log_prints=False)
async def tenant_status(credentials_block: str | None = None, connectors_file: str = "") -> StatusSummary:
    """Publish the tenant's sources at a glance (artifact `splendor-tenant-status`), those needing
    attention first. Reads only.

    Args:
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        connectors_file: a connectors file to compare with (empty: the tenant's sources only).
    """
    config = await load_config(credentials_block)
    name = limit_name(DEFAULT_CONCURRENCY_LIMIT, config.tenant)
    # Holds its share of the tenant's limit like any run calling Splendor, so the calls of every run
    # together stay within it.
    async with fleet_slots(name, min(STATUS_MAX_CONCURRENCY, config.max_concurrency)) as slots:
        report = await collect(config, slots, connectors_file or None)
    await acreate_table_artifact(table=table_rows(report), key=ARTIFACT_KEY, description=report.headline())
    lines = [f"**{report.headline()}**", ""]
    attention = [f"- `{r.source_key}`: {'; '.join(r.problems)}" for r in report.attention]
    lines += attention or ["Nothing needs attention."]
    await acreate_markdown_artifact(markdown="\n".join(lines), key=f"{ARTIFACT_KEY}-summary")
    get_run_logger().info(report.headline())
    return StatusSummary(
        tenant=report.tenant,
        sources=len(report.rows),
        need_attention=len(report.attention),
        attention=[r.source_key for r in report.attention],
    )
