"""Connectors as code: diff a connectors file against the tenant (`plan`) and converge it (`apply`).

The file's schema lives in `splendor_flows/specs/connectors_file.py` (the fleet flow reads it too); this
module adds what only a human-driven rollout needs. What the API lets us change decides the actions:

- missing source → onboard it with `connect_source(spec, sync=False)` (the resumable pipeline);
- name, retention_days, search_config, semantic_config → `PUT /v1/admin/sources/{id}`;
- a classification approved on Splendor for a source whose entry leaves its config to classification
  → recorded: written into the file as explicit config (see record.py);
- credentials → re-provisioned when the Secret block's content no longer matches the fingerprint
  of what was submitted last (see fingerprints.py), or when the API says they are not ready;
- a spec's `schedule` (runner prefect, the default) → the source joins the schedule group of its cron,
  time zone and credentials block on the sync-scheduled deployment (orchestration/source_schedules.py);
  the per-source change (created, updated or removed) is decided in engine/schedules.py; Splendor keeps
  such a source `manual`. With runner splendor, Splendor holds the
  cron and no Prefect schedule exists. A Prefect schedule change waits while Splendor's own cron differs
  from the spec (that is blocked below), so the two schedulers never run one source together;
- provider, dataset, bucket, role, prefix, streams and Splendor's own cron cannot change in place:
  reported as blocked (delete and re-create the source by hand), never applied silently;
- sources of the tenant that the file does not list are reported, never deleted.
"""

import asyncio
import json
from typing import Any, Literal
from uuid import UUID

from prefect.blocks.system import Secret
from pydantic import BaseModel

from splendor_api import SplendorClient, models
from splendor_api.models import AuthMode
from splendor_flows.connectors.record import record_classifications, unrecorded_classification
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.schedules import (
    CronSchedule,
    ScheduleChange,
    schedule_change,
    schedule_parameters,
    schedule_slug,
)
from splendor_flows.orchestration import fingerprints
from splendor_flows.orchestration.fingerprints import Fingerprint
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.source_lock import ensure_source_limits
from splendor_flows.orchestration.source_schedules import (
    SCHEDULED_DEPLOYMENT,
    SourceSchedules,
    apply_change,
    read_schedules,
)
from splendor_flows.orchestration.splendor_clients import load_config, open_client
from splendor_flows.specs.connectors_file import ConnectorsFile, load_connectors
from splendor_flows.specs.source import SourceSpec
from splendor_flows.tasks.source import config_drift

Action = Literal["create", "update", "unchanged", "blocked", "not-in-file"]
APPLY_CONCURRENCY = 4


class Change(BaseModel):
    source_key: str
    source_id: int | None = None
    provider_key: str | None = None
    create: bool = False
    updates: dict[str, dict[str, Any]] = {}  # field → {"from": remote, "to": wanted}
    reprovision: str | None = None  # why the credentials must be submitted again
    connect: bool = False
    blocked: list[str] = []  # fields that differ but cannot change in place
    record: dict[str, Any] = {}  # config classified on Splendor, to write into the file
    schedule: ScheduleChange | None = None  # the source's schedule on the sync-source deployment
    unmanaged: bool = False
    # A source no longer in the file keeps the schedule an earlier apply gave it: its slug, to say so.
    kept_schedule: str | None = None

    @property
    def action(self) -> Action:
        if self.unmanaged:
            return "not-in-file"
        if self.create:
            return "create"
        if self.updates or self.reprovision or self.connect or self.record or self.schedule:
            return "update"
        if self.blocked:
            return "blocked"
        return "unchanged"

    @property
    def onboards(self) -> bool:
        """Applying it runs the connect pipeline (which also makes the source's slot)."""
        return bool(self.create or self.reprovision or self.connect)

    def describe(self) -> str:
        parts = []
        for name, change in self.updates.items():
            parts.append(f"{name}: {_short(change['from'])} → {_short(change['to'])}")
        if self.reprovision:
            parts.append(f"credentials: {self.reprovision}")
        if self.connect:
            parts.append("connection: missing → create")
        if self.record:
            parts.append(
                "classification approved on Splendor → recorded in the file: "
                + "; ".join(f"{name}: {_short(value)}" for name, value in self.record.items())
            )
        if self.schedule:
            parts.append(self.schedule.describe())
        if self.blocked:
            parts.append("cannot change in place: " + ", ".join(self.blocked) + " (re-create the source)")
        if self.kept_schedule:
            parts.append(
                f"prefect schedule {self.kept_schedule} stays "
                "(list the source without a schedule to remove it)"
            )
        return "; ".join(parts)


class Plan(BaseModel):
    tenant: str
    file: str
    changes: list[Change]
    # The deployment the per-source schedules live on, and its id (None: not deployed).
    deployment: str = SCHEDULED_DEPLOYMENT
    deployment_id: str | None = None

    def count(self, action: Action) -> int:
        return sum(c.action == action for c in self.changes)

    @property
    def has_changes(self) -> bool:
        return any(c.action in ("create", "update") for c in self.changes)

    def totals(self) -> str:
        return (
            f"{self.count('create')} to create, {self.count('update')} to update, "
            f"{self.count('unchanged')} unchanged, {self.count('blocked')} blocked, "
            f"{self.count('not-in-file')} in the tenant but not in the file"
        )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "…"


async def secret_value(block_name: str) -> Any:
    # Annotated: Prefect's decorators on `aload` hide its return type from mypy.
    block: Secret[Any] = await Secret.aload(block_name)
    value = block.get()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def immutable_drift(spec: SourceSpec, source: models.Source, state: models.AirbyteState) -> list[str]:
    differs = []
    if not spec.is_connector_of(state.provider_key, state.airbyte_source_definition_id):
        differs.append("provider_key")
    for name in ("dataset_id", "bucket", "iam_role_arn", "prefix"):
        if (getattr(source, name) or "") != (getattr(spec, name) or ""):
            differs.append(name)
    if spec.streams is not None and state.streams and sorted(state.streams) != sorted(spec.streams):
        differs.append("streams")
    if (state.cron_expression or None) != spec.splendor_cron:
        differs.append("schedule")
    return differs


def updatable_drift(spec: SourceSpec, source: models.Source) -> dict[str, dict[str, Any]]:
    drift = config_drift(spec, source)
    if spec.retention_days is None:
        # A partial update cannot clear a value: leaving it out of the file means "don't manage it".
        drift.pop("retention_days", None)
    current = source.model_dump(mode="json")
    changes = {name: {"from": current.get(name), "to": value} for name, value in drift.items()}
    if spec.source_name and source.name != spec.source_name:
        changes["name"] = {"from": source.name, "to": spec.source_name}
    return changes


async def _credential_check(
    spec: SourceSpec, state: models.AirbyteState, auth_mode: str, known: Fingerprint | None
) -> str | None:
    if auth_mode != AuthMode.API_KEY:
        return None if state.credentials_ready else f"{state.credential_status} (OAuth consent needed)"
    if not state.credentials_ready:
        return f"{state.credential_status} → ready"
    if not spec.credentials_secret:
        return None
    if known is None:
        return "no fingerprint on record (submitted outside this tool) → submit once"
    if known.secret_block != spec.credentials_secret:
        return f"Secret block changed ({known.secret_block} → {spec.credentials_secret})"
    if not known.matches(await secret_value(spec.credentials_secret)):
        return f"content of Secret block '{spec.credentials_secret}' changed since {known.applied_at}"
    return None


def wanted_schedule(spec: SourceSpec, credentials_block: str | None) -> CronSchedule | None:
    schedule = spec.prefect_schedule
    if schedule is None:
        return None
    return CronSchedule(
        cron=schedule.cron,
        timezone=schedule.timezone,
        parameters=schedule_parameters(spec.source_key, credentials_block),
    )


def _schedule_plan(
    spec: SourceSpec, blocked: list[str], schedules: SourceSchedules, credentials_block: str | None
) -> ScheduleChange | None:
    if "schedule" in blocked:
        # Splendor's own cron differs from the spec: a Prefect schedule now could double the syncs
        # (or leave none), so it waits until the source is re-created to match.
        return None
    wanted = wanted_schedule(spec, credentials_block)
    if wanted is not None and schedules.deployment_id is None:
        raise PermanentStepError(
            "schedule",
            spec.source_key,
            f"the spec's schedule needs the {schedules.name} deployment, which this Prefect server lacks",
            "deploy it first (`make deploy` or `make serve`), then plan again; nothing was changed",
        )
    slug = schedule_slug(spec.source_key)
    return schedule_change(slug, wanted, schedules.current(slug))


async def build_plan(
    file: ConnectorsFile,
    client: SplendorClient,
    tenant: str,
    schedules: SourceSchedules,
    credentials_block: str | None = None,
) -> Plan:
    providers = {p.provider_key: p for p in await client.list_providers()}
    remote = {s.source_key: s for s in await client.list_sources()}
    known = await fingerprints.read_all(tenant, [s.source_key for s in file.sources])
    changes: list[Change] = []
    for spec in file.sources:
        change = Change(source_key=spec.source_key, provider_key=spec.provider_key)
        source = remote.get(spec.source_key)
        if source is None:
            change.create = True
            change.schedule = _schedule_plan(spec, [], schedules, credentials_block)
            changes.append(change)
            continue
        change.source_id = source.source_id
        state = (await client.get_airbyte_source(source.source_id)).airbyte
        change.blocked = immutable_drift(spec, source, state)
        if "provider_key" not in change.blocked:
            change.updates = updatable_drift(spec, source)
            provider = providers.get(spec.provider_key) if spec.provider_key else None
            auth_mode = provider.auth_mode if provider else AuthMode.API_KEY
            change.reprovision = await _credential_check(spec, state, auth_mode, known.get(spec.source_key))
            change.connect = not state.has_connection
            change.record = unrecorded_classification(spec, source)
        change.schedule = _schedule_plan(spec, change.blocked, schedules, credentials_block)
        changes.append(change)
    listed = {s.source_key for s in file.sources}
    for key, source in sorted(remote.items()):
        if key not in listed:
            kept = schedule_slug(key) if schedules.current(schedule_slug(key)) else None
            changes.append(
                Change(source_key=key, source_id=source.source_id, unmanaged=True, kept_schedule=kept)
            )
    deployment_id = str(schedules.deployment_id) if schedules.deployment_id else None
    return Plan(
        tenant=tenant, file=file.path, changes=changes, deployment=schedules.name, deployment_id=deployment_id
    )


async def plan(path: str, credentials_block: str | None = None) -> Plan:
    file = load_connectors(path)
    config = await load_config(credentials_block)
    async with open_client(credentials_block) as client:
        await client.preflight()
        return await build_plan(file, client, config.tenant, await read_schedules(), credentials_block)


class ApplyResult(BaseModel):
    plan: Plan
    applied: list[str] = []
    failed: dict[str, str] = {}
    # Per-source Prefect limits (source_lock) this apply created for sources that had none.
    slots_created: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.count("blocked")


async def _record_fingerprint(tenant: str, spec: SourceSpec) -> None:
    if spec.credentials_secret:
        value = await secret_value(spec.credentials_secret)
        await fingerprints.save(
            tenant, spec.source_key, fingerprints.new_fingerprint(value, spec.credentials_secret)
        )


async def _apply_one(
    change: Change,
    spec: SourceSpec,
    client: SplendorClient,
    tenant: str,
    credentials_block: str | None,
    deployment_id: str | None,
) -> None:
    from splendor_flows.flows.connect_source import connect_source

    if change.updates and change.source_id is not None:
        update = models.SourceUpdate(**{name: diff["to"] for name, diff in change.updates.items()})
        await client.update_source(change.source_id, update)
    if change.onboards:
        # The resumable pipeline does the onboarding; force re-submits credentials that are "ready".
        await connect_source(
            spec,
            sync=False,
            force=bool(change.reprovision) and not change.create,
            credentials_block=credentials_block,
        )
        await _record_fingerprint(tenant, spec)
    if change.schedule is not None and deployment_id is not None:
        # Last: a new source is scheduled only once it exists and is connected.
        await apply_change(UUID(deployment_id), change.schedule)


async def apply(path: str, credentials_block: str | None = None) -> ApplyResult:
    file = load_connectors(path)
    specs = {s.source_key: s for s in file.sources}
    config = await load_config(credentials_block)
    tenant = config.tenant
    async with open_client(credentials_block) as client:
        await client.preflight()
        current = await build_plan(file, client, tenant, await read_schedules(), credentials_block)
        result = ApplyResult(plan=current)
        slots = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def run(change: Change) -> None:
            async with slots:
                try:
                    await _apply_one(
                        change,
                        specs[change.source_key],
                        client,
                        tenant,
                        credentials_block,
                        current.deployment_id,
                    )
                except Exception as exc:
                    result.failed[change.source_key] = str(exc) or type(exc).__name__
                else:
                    result.applied.append(change.source_key)

        await asyncio.gather(*(run(c) for c in current.changes if c.action in ("create", "update")))
    # The file is written once, after the remote changes, and only for sources whose changes applied.
    records = {c.source_key: c.record for c in current.changes if c.record and c.source_key in result.applied}
    try:
        record_classifications(path, records)
    except (OSError, ValueError) as exc:
        for key in records:
            result.applied.remove(key)
            result.failed[key] = f"could not record the classification in {path}: {exc}"
    # Every source of the file that exists gets its slot here, off the sync path: the tenant's first fleet
    # or tick then starts its syncs without creating a thousand limits first (source_lock). Those whose
    # connect pipeline ran to the end above have theirs already; a source to create that did not apply
    # may not exist.
    without_slot = [
        c.source_key
        for c in current.changes
        if not c.unmanaged and not c.create and not (c.onboards and c.source_key in result.applied)
    ]
    result.slots_created = await ensure_source_limits(
        Scope(api_base=config.api_base, tenant=tenant, source_key=key, sync_id="") for key in without_slot
    )
    result.applied.sort()
    return result
