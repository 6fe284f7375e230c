"""One scheduler per source, through plan / apply against a real Prefect server and the emulator: a spec's
schedule makes the source a member of its schedule group on the sync-scheduled deployment (one Prefect
schedule per cron, time zone and credentials block, listing its sources), a change moves it to another
group, dropping it takes it out (an emptied group is deleted), and a runner=splendor spec gets
Splendor's cron and no Prefect schedule."""

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound

from splendor_emulator import Emulator
from splendor_flows.connectors.plan_apply import Change, apply, plan
from splendor_flows.deployments.serve import build, load_specs
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.orchestration.source_schedules import (
    SCHEDULED_DEPLOYMENT,
    Group,
    group_slug,
    read_schedules,
    window_of,
)
from tests.fleet.test_plan_apply import CREDENTIALS


async def deploy_sync_scheduled() -> None:
    """Register sync-scheduled exactly as prefect.yaml declares it (what `make serve` builds)."""
    [spec] = [s for s in load_specs() if s["name"] == "sync-scheduled"]
    # build() wants no running event loop: it returns the deployment itself there.
    deployment = await asyncio.to_thread(build, spec)
    await deployment.aapply()


async def delete_sync_scheduled() -> None:
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        except ObjectNotFound:
            return
        await client.delete_deployment(deployment.id)


async def schedules() -> dict[str, Any]:
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        return {s.slug: s for s in await client.read_deployment_schedules(deployment.id)}


def write(path: Path, secret: str, sources: dict[str, dict[str, Any] | None]) -> None:
    """A connectors file with one Stripe source per key, each with the given schedule (None: none)."""
    entries = []
    for key, schedule in sources.items():
        entry: dict[str, Any] = {
            "provider_key": "stripe",
            "source_key": key,
            "dataset_id": "payments",
            "streams": ["charges"],
            "credentials_secret": secret,
        }
        if schedule is not None:
            entry["schedule"] = schedule
        entries.append(entry)
    defaults = {"bucket": "acme-connectors", "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor"}
    path.write_text(yaml.safe_dump({"version": 1, "defaults": defaults, "sources": entries}))


def change_of(changes: list[Change], key: str) -> Change:
    return next(c for c in changes if c.source_key == key)


def splendor_schedule(emulator: Emulator, key: str) -> tuple[str, str | None]:
    [source] = [s for s in emulator.sources("acme") if s["source_key"] == key]
    return source["airbyte"]["schedule_type"], source["airbyte"]["cron_expression"]


async def test_the_spec_schedule_is_a_membership_of_its_schedule_group(
    emulator: Emulator, tmp_path: Path, source_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.blocks.system import Secret

    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    paris, paris2, splendor = f"{source_key}-p", f"{source_key}-q", f"{source_key}-s"
    at_three = {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    path = tmp_path / "connectors.yaml"
    write(
        path,
        secret,
        {paris: at_three, paris2: at_three, splendor: {"cron": "30 1 * * *", "runner": "splendor"}},
    )

    # Without the deployment, a plan that needs it stops before anything is created.
    await delete_sync_scheduled()
    with pytest.raises(PermanentStepError, match="needs the sync-scheduled/sync-scheduled deployment"):
        await plan(str(path))
    assert not [s for s in emulator.sources("acme") if s["source_key"] in (paris, splendor)]

    await deploy_sync_scheduled()
    async with get_client() as client:  # a hand-made schedule beside the managed ones: never touched
        deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        await client.create_deployment_schedules(
            deployment.id,
            [
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron="0 0 1 1 *"), slug="hand-made", active=False
                )
            ],
        )

    first = await plan(str(path))
    created = change_of(first.changes, paris)
    assert created.action == "create" and created.schedule is not None
    assert created.schedule.action == "create" and "source-" + paris in created.describe()
    assert change_of(first.changes, splendor).schedule is None

    result = await apply(str(path))
    assert result.ok, result.failed
    # The onboarding itself schedules nothing, and says where the schedule comes from.
    assert "connect-source schedules nothing: the spec's schedule ('0 3 * * *' Europe/Paris)" in caplog.text
    held = await schedules()
    three = group_slug("0 3 * * *", "Europe/Paris", None)
    assert set(held) == {"hand-made", three}
    group = held[three]
    assert isinstance(group.schedule, CronSchedule)
    assert (group.schedule.cron, group.schedule.timezone, group.active) == ("0 3 * * *", "Europe/Paris", True)
    # Both sources of that cron in one schedule: one run per tick syncs them together.
    assert group.parameters == {"source_keys": sorted([paris, paris2]), "trigger": "scheduled"}
    # Never both: Splendor keeps the Prefect-scheduled source manual, and holds the other's cron.
    assert splendor_schedule(emulator, paris) == ("manual", None)
    assert splendor_schedule(emulator, splendor) == ("cron", "30 1 * * *")
    assert not (await plan(str(path))).has_changes

    # A changed cron and time zone move the source to another group; the old one keeps the other source.
    write(
        path,
        secret,
        {
            paris: {"cron": "15 4 * * 1-5", "timezone": "America/New_York"},
            paris2: at_three,
            splendor: {"cron": "30 1 * * *", "runner": "splendor"},
        },
    )
    updated = change_of((await plan(str(path))).changes, paris)
    assert updated.action == "update" and updated.schedule is not None
    assert updated.schedule.action == "update" and "America/New_York" in updated.describe()
    assert (await apply(str(path))).ok
    weekdays = group_slug("15 4 * * 1-5", "America/New_York", None)
    moved = await schedules()
    assert set(moved) == {"hand-made", three, weekdays}
    assert moved[three].id == group.id and moved[three].parameters["source_keys"] == [paris2]
    assert moved[weekdays].parameters["source_keys"] == [paris]
    assert (moved[weekdays].schedule.cron, moved[weekdays].schedule.timezone) == (
        "15 4 * * 1-5",
        "America/New_York",
    )
    assert not (await plan(str(path))).has_changes

    # Redeploying prefect.yaml (make serve / prefect deploy) keeps the groups.
    await deploy_sync_scheduled()
    assert set(await schedules()) == {"hand-made", three, weekdays}

    # Switching a Splendor-scheduled source to Prefect cannot change Splendor's cron in place: blocked,
    # and no Prefect schedule is made while Splendor's still runs.
    write(path, secret, {paris: None, paris2: None, splendor: {"cron": "30 1 * * *"}})
    switched = await plan(str(path))
    blocked = change_of(switched.changes, splendor)
    assert blocked.action == "blocked" and blocked.blocked == ["schedule"] and blocked.schedule is None

    # Dropping a source from the file leaves it, and its schedule, alone; the plan says so.
    write(path, secret, {paris2: at_three, splendor: {"cron": "30 1 * * *", "runner": "splendor"}})
    dropped = change_of((await plan(str(path))).changes, paris)
    assert dropped.action == "not-in-file" and f"prefect schedule source-{paris} stays" in dropped.describe()
    assert (await apply(str(path))).ok
    assert set(await schedules()) == {"hand-made", three, weekdays}

    # Dropping the schedules from the specs empties both groups, which go; the hand-made one stays.
    write(path, secret, {paris: None, paris2: None, splendor: {"cron": "30 1 * * *"}})
    removed = change_of((await plan(str(path))).changes, paris)
    assert removed.schedule is not None and removed.schedule.action == "remove"
    await apply(str(path))
    assert set(await schedules()) == {"hand-made"}
    assert splendor_schedule(emulator, splendor) == ("cron", "30 1 * * *")


async def test_a_group_paused_through_prefect_loses_its_sources_and_apply_restores_them(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """Prefect clears a schedule's parameters when it is paused or resumed (its UI toggle, `prefect
    deployment schedule pause`): the group's ticks then name no source. Such a tick fails with the way out,
    and `plan` / `apply` see the sources out of their group and put them back."""
    from prefect.blocks.system import Secret

    from splendor_api import ConfigError
    from splendor_flows.flows.sync_scheduled import sync_scheduled

    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    keys = [f"{source_key}-a", f"{source_key}-b"]
    hourly = {"cron": "7 * * * *", "timezone": "UTC"}
    path = tmp_path / "connectors.yaml"
    write(path, secret, dict.fromkeys(keys, hourly))
    await deploy_sync_scheduled()
    assert (await apply(str(path))).ok
    slug = group_slug("7 * * * *", "UTC", None)
    group = (await schedules())[slug]
    assert group.parameters["source_keys"] == sorted(keys)

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        await client.update_deployment_schedule(deployment.id, group.id, active=False)
    assert (await schedules())[slug].parameters == {}

    with pytest.raises(ConfigError, match=r"source_keys: .*splendor-flows apply"):
        await sync_scheduled()
    again = await plan(str(path))
    assert {c.source_key for c in again.changes if c.schedule is not None} == set(keys)
    assert (await apply(str(path))).ok
    assert (await schedules())[slug].parameters["source_keys"] == sorted(keys)


@pytest.mark.parametrize(
    ("cron", "window", "after"),
    [
        ("17 * * * *", "15 * * * *", 120),
        ("0 3 * * *", "0 3 * * *", 0),
        ("59 3 * * 1-5", "45 3 * * 1-5", 840),
        # Not a plain minute, or not read back the same: a window of its own.
        ("* * * * *", "* * * * *", 0),
        ("*/5 * * * *", "*/5 * * * *", 0),
        ("5,35 * * * *", "5,35 * * * *", 0),
        ("05 * * * *", "05 * * * *", 0),
    ],
)
def test_a_cron_of_a_plain_minute_belongs_to_its_quarter_hours_window(
    cron: str, window: str, after: int
) -> None:
    assert window_of(cron) == (window, after)


def test_every_minute_of_the_hour_reads_back_as_the_cron_it_was_applied_as() -> None:
    for minute in range(60):
        cron = f"{minute} 3 * * 1-5"
        window, after = window_of(cron)
        group = Group(
            schedule_id=uuid.uuid4(),
            slug=group_slug(cron, "UTC", None),
            cron=window,
            timezone="UTC",
            credentials_block=None,
            source_keys=("s",),
            active=True,
            start_after_seconds=(("s", after),) if after else (),
        )
        assert group.cron_of("s") == cron
        assert group.schedule_of("s").in_its_group


async def test_crons_of_one_window_share_its_group_and_each_source_keeps_its_minute(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """Hourly crons spread over the hour make 4 groups, not 60: each source is due at its own minute
    within its group's quarter of an hour. A source left in a group of one cron (made before windows) is
    moved by the next apply."""
    from prefect.blocks.system import Secret

    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    a, b, c, d = (f"{source_key}-{x}" for x in "abcd")
    tz = "Asia/Tokyo"  # no other test's group shares it
    crons = {a: "5 * * * *", b: "10 * * * *", c: "20 * * * *", d: "* * * * *"}
    path = tmp_path / "connectors.yaml"
    write(path, secret, {key: {"cron": cron, "timezone": tz} for key, cron in crons.items()})
    await delete_sync_scheduled()
    await deploy_sync_scheduled()
    assert (await apply(str(path))).ok

    held = await schedules()
    first, second, every = (group_slug(cron, tz, None) for cron in ("0 * * * *", "15 * * * *", "* * * * *"))
    assert set(held) == {first, second, every}
    assert held[first].schedule.cron == "0 * * * *"
    assert held[first].parameters == {
        "source_keys": sorted([a, b]),
        "trigger": "scheduled",
        "start_after_seconds": {a: 300, b: 600},
    }
    assert held[second].schedule.cron == "15 * * * *"
    assert held[second].parameters["start_after_seconds"] == {c: 300}
    assert held[every].schedule.cron == "* * * * *" and "start_after_seconds" not in held[every].parameters
    # Read back per source, each schedule is the source's own cron: nothing to change.
    read = await read_schedules()
    assert {key: read.by_slug[f"source-{key}"][1].cron for key in crons} == crons
    assert not (await plan(str(path))).has_changes

    # Source a in a group of its cron alone, as an earlier apply left it (its slug hashed the cron).
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        await client.update_deployment_schedule(
            deployment.id,
            held[first].id,
            parameters={"source_keys": [b], "trigger": "scheduled", "start_after_seconds": {b: 600}},
        )
        legacy = "sources-" + hashlib.sha256(f"5 * * * *|{tz}|".encode()).hexdigest()[:12]
        await client.create_deployment_schedules(
            deployment.id,
            [
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron="5 * * * *", timezone=tz),
                    slug=legacy,
                    active=True,
                    parameters={"source_keys": [a], "trigger": "scheduled"},
                )
            ],
        )
    moved = change_of((await plan(str(path))).changes, a)
    assert moved.schedule is not None and moved.schedule.action == "update"
    assert "outdated schedule group" in moved.describe()
    assert (await apply(str(path))).ok
    after = await schedules()
    assert legacy not in after
    assert after[first].parameters["start_after_seconds"] == {a: 300, b: 600}
    assert not (await plan(str(path))).has_changes
    await delete_sync_scheduled()
