"""The sync-source deployment's per-source schedules, read and changed through Prefect's client.

What to change is decided in `engine.schedules`; this module only reads the deployment's schedules and
creates, updates or deletes one by id. Each source's schedule is its own object on the deployment
(`POST/PATCH/DELETE /deployments/{id}/schedules`), so changing one never rewrites the others, and a
redeploy of prefect.yaml keeps them: the sync-source entry there has no `schedules` key, which
`prefect deploy` reads as "leave the schedules alone" (an empty list would, in a later Prefect, clear them).
Updating or deleting a schedule makes the server drop the future runs it had created.
"""

import contextlib
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule as PrefectCron
from prefect.exceptions import ObjectNotFound

from splendor_flows.engine.schedules import SLUG_PREFIX, CronSchedule, ScheduleChange

# Flow name / deployment name, as prefect.yaml and deployments/serve.py register it.
SYNC_DEPLOYMENT = "sync-source/sync-source"


@dataclass(frozen=True)
class DeploymentSchedules:
    """The per-source schedules (slug `source-<key>`) of a deployment; `deployment_id` None: not deployed."""

    name: str
    deployment_id: UUID | None
    by_slug: dict[str, tuple[str, CronSchedule]]

    def current(self, slug: str) -> tuple[str, CronSchedule] | None:
        return self.by_slug.get(slug)


async def read_schedules(name: str = SYNC_DEPLOYMENT) -> DeploymentSchedules:
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            return DeploymentSchedules(name, None, {})
        schedules = await client.read_deployment_schedules(deployment.id)
    found: dict[str, tuple[str, CronSchedule]] = {}
    for item in schedules:
        if not item.slug or not item.slug.startswith(SLUG_PREFIX):
            continue  # a hand-made schedule: not ours to change
        rule = item.schedule
        cron = rule.cron if isinstance(rule, PrefectCron) else None
        timezone = rule.timezone if isinstance(rule, PrefectCron) else None
        found[item.slug] = (
            str(item.id),
            CronSchedule(cron=cron, timezone=timezone, parameters=item.parameters),
        )
    return DeploymentSchedules(name, deployment.id, found)


async def apply_change(deployment_id: UUID, change: ScheduleChange) -> None:
    async with get_client() as client:
        if change.action == "create" and change.wanted is not None:
            await client.create_deployment_schedules(
                deployment_id,
                [
                    DeploymentScheduleCreate(
                        schedule=_prefect_cron(change.wanted),
                        active=True,
                        parameters=change.wanted.parameters,
                        slug=change.slug,
                    )
                ],
            )
        elif change.action == "update" and change.wanted is not None and change.schedule_id:
            await client.update_deployment_schedule(
                deployment_id,
                UUID(change.schedule_id),
                schedule=_prefect_cron(change.wanted),
                parameters=change.wanted.parameters,
            )
        elif change.action == "remove" and change.schedule_id:
            # Removed meanwhile: the wanted end state holds.
            with contextlib.suppress(ObjectNotFound):
                await client.delete_deployment_schedule(deployment_id, UUID(change.schedule_id))
        else:
            raise ValueError(f"incomplete schedule change: {change!r}")


def _prefect_cron(schedule: CronSchedule) -> PrefectCron:
    if schedule.cron is None:
        raise ValueError("a wanted schedule always has a cron")
    return PrefectCron(cron=schedule.cron, timezone=schedule.timezone or "UTC")
