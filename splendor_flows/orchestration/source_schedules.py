"""Each source's Prefect schedule, kept as a member of a schedule group on the `sync-scheduled` deployment.

A group is one Prefect schedule of that deployment (slug `sources-<digest>`); its parameters list the
group's sources (`source_keys`), and each of its runs (a tick) syncs them all in one process
(flows/sync_scheduled.py). What to change is still decided per source (`engine.schedules`: a source's
schedule is created, updated or removed); this module reads the groups as per-source schedules and turns
a per-source change into the change of one or two groups: leave the old group (deleted when it
empties), join the new one (created when it is new).

Which group: one per (window, time zone, credentials block). A cron whose minute is a plain number
(`17 * * * *`, `5 3 * * 1-5`) belongs to the window of `WINDOW_MINUTES` that holds that minute: the
group's cron is the same cron at the window's first minute, and the source's place in the window is in
the group's `start_after_seconds` (17 * * * * → group `15 * * * *`, 120 s after each tick's scheduled
time). The tick waits in its process until each source's own minute, so a source still starts at its
cron's time, while a tenant of hourly sources spread over the hour starts 4 flow-run processes an hour
instead of 60 (each costs about 2 s of CPU to start: docs/fleet.md). Any other cron (`* * * * *`,
`*/5 * * * *`) is a window of its own.

A change re-reads the deployment's schedules first and runs under a process-wide lock, so the changes
of one `apply` (which applies several sources at once) never overwrite each other's membership.
Updating or deleting a schedule makes the server drop the future runs it had created, so the next
tick already runs with the new membership (a tick already running keeps the membership it started
with: a source that joins a window whose tick has started first syncs on the window's next tick).
Hand-made schedules (any other slug) are never touched, and a redeploy of prefect.yaml keeps the
groups: the sync-scheduled entry there has no `schedules` key, which `prefect deploy` reads as "leave
the schedules alone".
"""

import asyncio
import contextlib
import hashlib
import re
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

# The ticks of crons with a plain minute: one per this many minutes (a divisor of 60). Longer windows
# start fewer processes but keep each longer, and delay the first sync of a source applied while its
# window's tick already runs by up to the window.
WINDOW_MINUTES = 15
# A minute as cron writes it plainly (no leading zero, so that the source's cron reads back the same).
_PLAIN_MINUTE = re.compile(r"[1-5]?[0-9]")


def window_of(cron: str) -> tuple[str, int]:
    """The group's cron for a source's cron, and how many seconds after the group's tick it is due."""
    minute, _, rest = cron.partition(" ")
    if not _PLAIN_MINUTE.fullmatch(minute) or len(rest.split()) != 4:
        return cron, 0
    start = int(minute) - int(minute) % WINDOW_MINUTES
    return f"{start} {rest}", (int(minute) - start) * 60


def group_slug(cron: str, timezone: str | None, credentials_block: str | None) -> str:
    """The slug of the group a source of this cron, time zone and credentials block belongs to."""
    text = f"{window_of(cron)[0]}|{timezone or 'UTC'}|{credentials_block or ''}"
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
    # Seconds after the tick's scheduled time each source is due (absent: at the tick).
    start_after_seconds: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, item: DeploymentSchedule) -> "Group":
        rule = item.schedule
        parameters = item.parameters or {}
        keys = parameters.get("source_keys") or []
        after = parameters.get("start_after_seconds") or {}
        return cls(
            schedule_id=item.id,
            slug=item.slug or "",
            cron=rule.cron if isinstance(rule, PrefectCron) else None,
            timezone=rule.timezone if isinstance(rule, PrefectCron) else None,
            credentials_block=parameters.get("credentials_block"),
            source_keys=tuple(str(k) for k in keys),
            active=item.active,
            start_after_seconds=tuple(sorted((str(k), int(v)) for k, v in after.items())),
        )

    def cron_of(self, source_key: str) -> str | None:
        """The source's own cron: the group's, at the minute the source is due within the window."""
        after = dict(self.start_after_seconds).get(source_key, 0)
        if self.cron is None or not after:
            return self.cron
        minute, _, rest = self.cron.partition(" ")
        return f"{int(minute) + after // 60} {rest}"

    def schedule_of(self, source_key: str) -> CronSchedule:
        """The source's schedule, in the per-source terms `engine.schedules` compares."""
        cron = self.cron_of(source_key)
        return CronSchedule(
            cron=cron,
            timezone=self.timezone,
            parameters=schedule_parameters(source_key, self.credentials_block),
            in_its_group=cron is None or self.slug == group_slug(cron, self.timezone, self.credentials_block),
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


def _group_parameters(
    source_keys: list[str], credentials_block: str | None, start_after_seconds: dict[str, int]
) -> dict[str, Any]:
    parameters: dict[str, Any] = {"source_keys": sorted(source_keys), "trigger": "scheduled"}
    if credentials_block:
        parameters["credentials_block"] = credentials_block
    after = {key: start_after_seconds[key] for key in sorted(source_keys) if start_after_seconds.get(key)}
    if after:
        parameters["start_after_seconds"] = after
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
                        parameters=_group_parameters(
                            rest, group.credentials_block, dict(group.start_after_seconds)
                        ),
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
            window, after = window_of(wanted.cron)
            joined = next((g for g in groups if g.slug == slug), None)
            if joined is not None:
                keys = [k for k in joined.source_keys if k != source_key] + [source_key]
                offsets = dict(joined.start_after_seconds) | {source_key: after}
                await client.update_deployment_schedule(
                    deployment_id, joined.schedule_id, parameters=_group_parameters(keys, block, offsets)
                )
                return
            await client.create_deployment_schedules(
                deployment_id,
                [
                    DeploymentScheduleCreate(
                        schedule=PrefectCron(cron=window, timezone=wanted.timezone or "UTC"),
                        active=True,
                        parameters=_group_parameters([source_key], block, {source_key: after}),
                        slug=slug,
                    )
                ],
            )
