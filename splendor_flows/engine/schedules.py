"""One scheduler per source: the Prefect schedule a source asks for, against the one its deployment holds.

A source whose spec has `schedule.runner: prefect` gets exactly one schedule, named by its slug
(`source-<source_key>`), carrying the cron, the time zone and the run's parameters. Connectors-as-code
computes the change here; the orchestration layer keeps the schedule as the source's membership of a
schedule group on the `sync-scheduled` deployment (orchestration/source_schedules.py). No Prefect
import here.
"""

from typing import Any, Literal

from pydantic import BaseModel

SLUG_PREFIX = "source-"


def schedule_slug(source_key: str) -> str:
    """The name of a source's schedule (its key in per-source plans)."""
    return f"{SLUG_PREFIX}{source_key}"


def schedule_parameters(source_key: str, credentials_block: str | None) -> dict[str, Any]:
    """What each scheduled run of the source is started with (never a secret: a block's name at most)."""
    parameters: dict[str, Any] = {"source_key": source_key, "trigger": "scheduled"}
    if credentials_block:
        parameters["credentials_block"] = credentials_block
    return parameters


class CronSchedule(BaseModel):
    """A cron schedule as the deployment holds it; None fields stand for what is not a cron at all."""

    cron: str | None
    timezone: str | None
    parameters: dict[str, Any]
    # False: the deployment runs the source from a schedule group its cron no longer maps to (one made
    # before crons of a plain minute shared a window's group); apply moves it. Wanted schedules are True.
    in_its_group: bool = True

    def describe(self) -> str:
        if self.cron is None:
            return "a schedule that is not a cron"
        where = "" if self.in_its_group else " (in an outdated schedule group)"
        return f"'{self.cron}' {self.timezone or 'UTC'} {self.parameters}{where}"


class ScheduleChange(BaseModel):
    slug: str
    action: Literal["create", "update", "remove"]
    # The schedule's id on the deployment (update, remove).
    schedule_id: str | None = None
    current: CronSchedule | None = None
    wanted: CronSchedule | None = None

    def describe(self) -> str:
        before = self.current.describe() if self.current else "none"
        after = self.wanted.describe() if self.wanted else "none"
        return f"prefect schedule {self.slug}: {before} → {after}"


def schedule_change(
    slug: str, wanted: CronSchedule | None, current: tuple[str, CronSchedule] | None
) -> ScheduleChange | None:
    """What to do so the deployment holds `wanted` under `slug` (`current`: its id and schedule now).

    Whether a schedule is paused is not compared: pausing it in the UI is an operator's call that a
    later apply respects.
    """
    if current is None:
        return ScheduleChange(slug=slug, action="create", wanted=wanted) if wanted else None
    schedule_id, now = current
    if wanted is None:
        return ScheduleChange(slug=slug, action="remove", schedule_id=schedule_id, current=now)
    if _normal(now) == _normal(wanted):
        return None
    return ScheduleChange(slug=slug, action="update", schedule_id=schedule_id, current=now, wanted=wanted)


def _normal(schedule: CronSchedule) -> tuple[str | None, str, dict[str, Any], bool]:
    # Prefect stores no time zone as UTC: the two mean the same schedule.
    return schedule.cron, schedule.timezone or "UTC", schedule.parameters, schedule.in_its_group
