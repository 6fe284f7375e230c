"""Each source's Prefect schedule, kept as a member of a schedule group on the `sync-scheduled` deployment.

A group is one Prefect schedule of that deployment (slug `sources-<digest>`) per distinct (cron, time
zone, credentials block); its parameters list the group's sources (`source_keys`), and each of its
runs syncs them all in one process (flows/sync_scheduled.py). What to change is still decided per
source (`engine.schedules`: a source's schedule is created, updated or removed); this module reads the
groups as per-source schedules and turns a per-source change into the change of one or two groups:
leave the old group (deleted when it empties), join the new one (created when it is new).

A change re-reads the deployment's schedules first and runs under a process-wide lock, so the changes
of one `apply` (which applies several sources at once) never overwrite each other's membership.
Updating or deleting a schedule makes the server drop the future runs it had created, so the next
tick already runs with the new membership. Hand-made schedules (any other slug) are never touched,
and a redeploy of prefect.yaml keeps the groups: the sync-scheduled entry there has no `schedules`
key, which `prefect deploy` reads as "leave the schedules alone".
"""

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.schedules import CronSchedule as PrefectCron
from prefect.exceptions import ObjectNotFound

from splendor_flows.engine.schedules import SLUG_PREFIX, CronSchedule, ScheduleChange, schedule_parameters

# Flow name / deployment name, as prefect.yaml and deployments/serve.py register it.
SCHEDULED_DEPLOYMENT = "sync-scheduled/sync-scheduled"
GROUP_PREFIX = "sources-"
_CHANGES = asyncio.Lock()


def group_slug(cron: str, timezone: str | None, credentials_block: str | None) -> str:
    """The slug of the group every source of this cron, time zone and credentials block belongs to."""
    text = f"{cron}|{timezone or 'UTC'}|{credentials_block or ''}"
    return f"{GROUP_PREFIX}{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Group:
    schedule_id: UUID
    slug: str
    cron: str | None
    timezone: str | None
    credentials_block: str | None
    source_keys: tuple[str, ...]
    active: bool

    @classmethod
    def of(cls, item: DeploymentSchedule) -> "Group":
        rule = item.schedule
        parameters = item.parameters or {}
        keys = parameters.get("source_keys") or []
        return cls(
            schedule_id=item.id,
            slug=item.slug or "",
            cron=rule.cron if isinstance(rule, PrefectCron) else None,
            timezone=rule.timezone if isinstance(rule, PrefectCron) else None,
            credentials_block=parameters.get("credentials_block"),
            source_keys=tuple(str(k) for k in keys),
            active=item.active,
        )

    def schedule_of(self, source_key: str) -> CronSchedule:
        """The source's schedule, in the per-source terms `engine.schedules` compares."""
        return CronSchedule(
            cron=self.cron,
            timezone=self.timezone,
            parameters=schedule_parameters(source_key, self.credentials_block),
        )


@dataclass(frozen=True)
class SourceSchedules:
    """Every source's schedule (by slug `source-<key>`: its group's schedule id and its schedule);
    `deployment_id` None: the deployment is not on this server."""

    name: str
    deployment_id: UUID | None
    by_slug: dict[str, tuple[str, CronSchedule]]
    groups: tuple[Group, ...] = ()

    def current(self, slug: str) -> tuple[str, CronSchedule] | None:
        return self.by_slug.get(slug)

    def next_run_of(self, source_key: str) -> Group | None:
        """The group that syncs this source (its schedule says when), if any."""
        return next((g for g in self.groups if source_key in g.source_keys), None)


async def _groups(deployment_id: UUID) -> list[Group]:
    async with get_client() as client:
        schedules = await client.read_deployment_schedules(deployment_id)
    return [Group.of(s) for s in schedules if s.slug and s.slug.startswith(GROUP_PREFIX)]


async def read_schedules(name: str = SCHEDULED_DEPLOYMENT) -> SourceSchedules:
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            return SourceSchedules(name, None, {})
    groups = await _groups(deployment.id)
    by_slug = {
        f"{SLUG_PREFIX}{key}": (str(group.schedule_id), group.schedule_of(key))
        for group in groups
        for key in group.source_keys
    }
    return SourceSchedules(name, deployment.id, by_slug, tuple(groups))


def _group_parameters(source_keys: list[str], credentials_block: str | None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"source_keys": sorted(source_keys), "trigger": "scheduled"}
    if credentials_block:
        parameters["credentials_block"] = credentials_block
    return parameters


async def apply_change(deployment_id: UUID, change: ScheduleChange) -> None:
    """Make the source of `change` a member of the group its wanted schedule names, and of no other."""
    if change.action != "remove" and (change.wanted is None or change.wanted.cron is None):
        raise ValueError(f"incomplete schedule change: {change!r}")
    source_key = change.slug.removeprefix(SLUG_PREFIX)
    async with _CHANGES:
        groups = await _groups(deployment_id)
        async with get_client() as client:
            for group in groups:
                if source_key not in group.source_keys:
                    continue
                rest = [k for k in group.source_keys if k != source_key]
                if rest:
                    await client.update_deployment_schedule(
                        deployment_id,
                        group.schedule_id,
                        parameters=_group_parameters(rest, group.credentials_block),
                    )
                else:
                    # Removed meanwhile: the wanted end state holds.
                    with contextlib.suppress(ObjectNotFound):
                        await client.delete_deployment_schedule(deployment_id, group.schedule_id)
            wanted = change.wanted
            if change.action == "remove" or wanted is None or wanted.cron is None:
                return
            block = wanted.parameters.get("credentials_block")
            slug = group_slug(wanted.cron, wanted.timezone, block)
            joined = next((g for g in groups if g.slug == slug), None)
            if joined is not None:
                keys = [k for k in joined.source_keys if k != source_key] + [source_key]
                await client.update_deployment_schedule(
                    deployment_id, joined.schedule_id, parameters=_group_parameters(keys, block)
                )
                return
            await client.create_deployment_schedules(
                deployment_id,
                [
                    DeploymentScheduleCreate(
                        schedule=PrefectCron(cron=wanted.cron, timezone=wanted.timezone or "UTC"),
                        active=True,
                        parameters=_group_parameters([source_key], block),
                        slug=slug,
                    )
                ],
            )
