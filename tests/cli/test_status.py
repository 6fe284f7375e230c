"""`splendor-flows status` as an operator runs it, against the emulator and the Prefect test server: one
row per source, problems first, exit 0 / 1 / 2, reads only, the API calls per source and the bound on
calls in flight; and the `tenant-status` flow's artifact."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect import flow, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.states import Paused
from typer.testing import CliRunner

from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from splendor_flows.cli.main import app
from splendor_flows.engine.freshness import next_fire
from splendor_flows.orchestration.runtime import use_runtime
from splendor_flows.orchestration.source_schedules import SCHEDULED_DEPLOYMENT, group_slug
from tests.emulator.helpers import (
    ADMIN,
    STRIPE_CONFIG,
    connected_source,
    fast_config,
    source_body,
    wait_run,
)
from tests.fleet.conftest import RecordingTransport
from tests.fleet.test_plan_apply_schedules import deploy_sync_scheduled

CLI = Path(sys.executable).with_name("splendor-flows")
LIST_SOURCES = "GET /v1/admin/sources"
LIST_INGEST = "GET /v1/ingest/runs"
GET_AIRBYTE = "GET /v1/admin/airbyte-sources/{source_id}"
LIST_RUNS = "GET /v1/admin/airbyte-sources/{source_id}/runs"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, splendor_env: None) -> Iterator[Emulator]:
    """A tenant of its own: status reads every source of the tenant, so no other test's may be there."""
    with running_emulator(fast_config()) as running:
        monkeypatch.setenv("SPLENDOR_API_BASE", running.base_url)
        yield running


def api(emu: Emulator) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN}", "X-Splendor-Tenant-Id": "acme"}
    return httpx.Client(base_url=emu.base_url, headers=headers)


def synced(client: httpx.Client, key: str, **body: Any) -> int:
    """A connected source with one finished sync handed to ingestion; returns its id."""
    if body:
        created = client.post("/v1/admin/airbyte-sources", json=source_body(key, **body))
        assert created.status_code == 200, created.text
        source_id: int = created.json()["source"]["source_id"]
        configuration = {"source_configuration": STRIPE_CONFIG}
        client.post(f"/v1/admin/airbyte-sources/{source_id}/provision", json=configuration).raise_for_status()
        client.post(f"/v1/admin/airbyte-sources/{source_id}/connection").raise_for_status()
    else:
        source_id = connected_source(client, key)
    started = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"})
    run = wait_run(client, started.json()["run"]["run_id"])[-1]
    if run["status"] == "succeeded":
        client.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest")
    return source_id


def status(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def as_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, output = status("--json", *args)
    return code, json.loads(output)


def rows_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["source_key"]: row for row in report["rows"]}


async def join_group(source_key: str, cron: str, timezone: str) -> None:
    """Make the source a member of a schedule group of sync-scheduled, as `apply` does."""
    await deploy_sync_scheduled()
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(SCHEDULED_DEPLOYMENT)
        await client.create_deployment_schedules(
            deployment.id,
            [
                DeploymentScheduleCreate(
                    schedule=CronSchedule(cron=cron, timezone=timezone),
                    active=True,
                    parameters={"source_keys": [source_key], "trigger": "scheduled"},
                    slug=group_slug(cron, timezone, f"status-test-{source_key}"),
                )
            ],
        )


@flow(name="status-test-waiting")
def waiting(spec: dict[str, Any]) -> None:
    """Stands for a connect-source run paused on a person (only its name and parameters are used)."""


async def paused_run(pause_key: str, source_key: str) -> str:
    async with get_client() as client:
        run = await client.create_flow_run(
            waiting,
            parameters={"spec": {"source_key": source_key}},
            state=Paused(timeout_seconds=3600, pause_key=pause_key),
        )
    return str(run.id)


def test_a_healthy_tenant_exits_0_reads_only_and_costs_two_calls_per_source(emu: Emulator) -> None:
    with api(emu) as client:
        synced(client, "grouped")
        synced(client, "splendor-cron", schedule_type="cron", cron_expression="*/30 * * * *")
        hosted = {"source_key": "uploads", "name": "Uploads", "dataset_id": "uploads"}
        client.post("/v1/admin/hosted-sources", json=hosted).raise_for_status()
    asyncio.run(join_group("grouped", "0 9 * * *", "Europe/Paris"))
    emu.reset_counters()
    before = len(emu.mutations())

    code, report = as_json()
    assert code == 0, report
    rows = rows_of(report)
    assert set(rows) == {"grouped", "splendor-cron", "uploads"}
    # A hosted source has no sync runs to judge, and costs no call of its own.
    uploads = rows.pop("uploads")
    assert (uploads["provider"], uploads["scheduler"], uploads["problems"]) == ("hosted", "none", [])
    at = datetime.fromisoformat(report["at"])
    grouped, cron = rows["grouped"], rows["splendor-cron"]
    assert (grouped["scheduler"], grouped["cron"], grouped["timezone"]) == (
        "prefect",
        "0 9 * * *",
        "Europe/Paris",
    )
    assert grouped["next_run"] == next_fire("0 9 * * *", "Europe/Paris", at).isoformat()  # type: ignore[union-attr]
    assert grouped["window_seconds"] == 2 * 86400
    assert (cron["scheduler"], cron["window_seconds"]) == ("splendor", 3600)
    for row in rows.values():
        assert row["last_run"]["status"] == "succeeded" and row["last_run"]["records"] > 0
        assert (row["stale"], row["failures_in_row"], row["problems"]) == (False, 0, [])
        assert row["ingest"] in ("ready", "in progress")

    # Reads only, and exactly the calls the docs state: two for the tenant, two per Airbyte source,
    # none for the hosted one.
    assert len(emu.mutations()) == before
    assert emu.counts() == {LIST_SOURCES: 1, LIST_INGEST: 1, GET_AIRBYTE: 2, LIST_RUNS: 2}

    code, output = status()
    assert code == 0
    assert "OK: nothing needs attention" in output


def test_problems_come_first_with_the_wait_link_and_exit_1(emu: Emulator) -> None:
    emu.add_fault(kind="run_fail", source_key="failing", error_message="upstream said no")
    with api(emu) as client:
        synced(client, "a-fine")
        synced(client, "failing")
        oauth_id = connected_source(client, "z-consent")
    flow_run_id = asyncio.run(paused_run(f"oauth-{oauth_id}", "z-consent"))
    # A wait of another tenant's source with the same id names another key: not this source's.
    asyncio.run(paused_run(f"classify-{oauth_id}", "someone-elses-source"))

    code, report = as_json()
    assert code == 1
    keys = [row["source_key"] for row in report["rows"]]
    assert keys == ["failing", "z-consent", "a-fine"]
    failing, consent = report["rows"][0], report["rows"][1]
    assert failing["failures_in_row"] == 1 and failing["last_run"]["status"] == "failed"
    assert "1 failed run(s) in a row" in failing["problems"]
    [wait] = consent["waits"]
    assert wait["kind"] == "oauth consent" and wait["flow_run_id"] == flow_run_id
    assert flow_run_id in wait["link"]
    assert consent["problems"] == ["waiting on a person: oauth consent"]
    assert report["need_attention"] == 2

    code, output = status()
    assert code == 1
    assert "ATTENTION: 2 source(s): failing, z-consent" in output
    assert output.index("failing") < output.index("a-fine")


def test_a_connectors_file_shows_what_each_side_lacks(emu: Emulator, tmp_path: Path) -> None:
    with api(emu) as client:
        synced(client, "in-both")
        synced(client, "only-in-splendor")
    common = {
        "provider_key": "stripe",
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "streams": ["charges"],
        "credentials_secret": "unused",
    }
    path = tmp_path / "connectors.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "sources": [
                    {**common, "source_key": "in-both"},
                    {**common, "source_key": "only-in-file", "schedule": {"cron": "0 3 * * *"}},
                ],
            }
        )
    )
    code, report = as_json("--connectors-file", str(path))
    assert code == 1
    rows = rows_of(report)
    assert rows["in-both"]["in_file"] is True and rows["in-both"]["problems"] == []
    assert rows["only-in-splendor"]["in_file"] is False
    assert rows["only-in-splendor"]["problems"] == ["in Splendor but not in the connectors file"]
    assert rows["only-in-file"]["in_splendor"] is False
    assert rows["only-in-file"]["scheduler"] == "prefect"

    code, output = status("-f", str(path))
    assert "only-in-splendor (not in file)" in output and "only-in-file (not in Splendor)" in output


def test_a_command_that_cannot_run_exits_2_with_one_line(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, output = status("-f", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert output.count("error:") == 1 and "missing.yaml" in output

    monkeypatch.setenv("SPLENDOR_TOKEN", "not-a-real-token-7c1d")
    code, output = status()
    assert code == 2
    assert output.startswith("error:") and "not-a-real-token-7c1d" not in output

    monkeypatch.setenv("SPLENDOR_TOKEN", ADMIN)
    emu.add_fault(kind="server_error", route=LIST_SOURCES)
    code, output = status("--json")
    assert code == 2 and output.startswith("error:")

    # A Prefect server that does not answer, as a user's shell would meet it.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "SPLENDOR_API_BASE": emu.base_url}
    done = subprocess.run([str(CLI), "status"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: the Prefect API at http://127.0.0.1:{port}/api did not answer "
        "(ConnectError: All connection attempts failed)"
    ]


def test_calls_in_flight_stay_within_the_tenant_api_limit(emu: Emulator) -> None:
    with api(emu) as client:
        for index in range(12):
            connected_source(client, f"bounded-{index:02d}")

    async def set_limit(slots: int | None) -> None:
        async with get_client() as prefect:
            if slots is None:
                await prefect.delete_global_concurrency_limit_by_name("splendor-api-acme")
            else:
                from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

                await prefect.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name="splendor-api-acme", limit=slots)
                )

    asyncio.run(set_limit(0))
    try:
        code, output = status()
    finally:
        asyncio.run(set_limit(None))
    assert code == 2
    assert "error: global concurrency limit 'splendor-api-acme' allows 0 slots" in output

    asyncio.run(set_limit(3))
    try:
        # Slow answers make the requests pile up behind whatever bound there is.
        emu.add_fault(kind="latency", route="*", seconds=0.1)
        recorder = RecordingTransport()
        with use_runtime(transport=recorder):
            code, report = as_json()
    finally:
        asyncio.run(set_limit(None))
    # Never synced, created just now: within their window, nothing needs attention.
    assert code == 0, report
    assert report["max_requests_in_flight"] == 3
    assert recorder.peak == 3


def test_status_as_a_user_runs_it_costs_two_calls_per_source(tmp_path: Path, splendor_env: None) -> None:
    """A new process, Prefect included, on 100 sources: two tenant-wide lists and two calls per source.
    (`make bench-status` times the command on 1,000; docs/status.md has its figures.)"""
    import bench.seed as seed
    from splendor_api import SplendorClient, SplendorConfig

    n = 100
    with running_emulator(EmulatorConfig(bucket_root=tmp_path / "buckets")) as emu:
        config = SplendorConfig(api_base=emu.base_url, tenant_id="acme", token=ADMIN)

        async def onboard() -> None:
            async with SplendorClient(config) as client:
                await seed.onboard(client, [seed.bench_spec(i) for i in range(n)])

        asyncio.run(onboard())
        emu.reset_counters()
        env = {**os.environ, "SPLENDOR_API_BASE": emu.base_url, "SPLENDOR_TOKEN": ADMIN}
        done = subprocess.run(
            [str(CLI), "status", "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        counts = emu.counts()
    report = json.loads(done.stdout)
    assert report["sources"] == n, done.stderr
    assert counts == {LIST_SOURCES: 1, LIST_INGEST: 1, GET_AIRBYTE: n, LIST_RUNS: n}


async def test_the_tenant_status_flow_publishes_the_same_table(emu: Emulator) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from splendor_flows.flows.tenant_status import ARTIFACT_KEY, tenant_status

    with api(emu) as client:
        synced(client, "flow-fine")
    emu.add_fault(kind="run_fail", source_key="flow-failing")
    with api(emu) as client:
        synced(client, "flow-failing")
    before = len(emu.mutations())
    summary = await tenant_status()
    assert (summary.sources, summary.need_attention, summary.attention) == (2, 1, ["flow-failing"])
    assert len(emu.mutations()) == before
    async with get_client() as prefect:
        [artifact] = await prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [row["source"] for row in table] == ["flow-failing", "flow-fine"]
    assert table[0]["problems"] == "1 failed run(s) in a row"


def test_the_deployment_is_declared_with_its_hourly_schedule() -> None:
    from splendor_flows.deployments.serve import build, load_specs

    [spec] = [s for s in load_specs() if s["name"] == "tenant-status"]
    deployment = build(spec)
    assert deployment.entrypoint is not None and deployment.entrypoint.endswith("tenant_status")
    [schedule] = deployment.schedules or []
    assert isinstance(schedule.schedule, CronSchedule) and schedule.schedule.cron == "5 * * * *"
    assert "splendor" in deployment.tags


def test_the_window_without_a_schedule_is_the_live_automation_threshold(emu: Emulator) -> None:
    """The automation as applied on the server (perhaps with another `--within`) wins over the file."""
    from prefect.events.actions import DoNothing
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    from splendor_flows.engine.freshness import FRESHNESS_AUTOMATION
    from splendor_flows.orchestration.automations import load

    with api(emu) as client:
        synced(client, "unscheduled")
    code, report = as_json()
    assert code == 0
    [shipped] = [a for a in load() if a["name"] == FRESHNESS_AUTOMATION]
    assert rows_of(report)["unscheduled"]["window_seconds"] == shipped["trigger"]["within"]

    async def apply_with(within: int) -> Any:
        trigger = EventTrigger.model_validate({**shipped["trigger"], "within": within})
        async with get_client() as prefect:
            return await prefect.create_automation(
                AutomationCore(name=FRESHNESS_AUTOMATION, trigger=trigger, actions=[DoNothing()])
            )

    async def delete(automation_id: Any) -> None:
        async with get_client() as prefect:
            await prefect.delete_automation(automation_id)

    automation_id = asyncio.run(apply_with(600))
    try:
        # Synced just now: still fresh with a 10-minute window.
        code, report = as_json()
    finally:
        asyncio.run(delete(automation_id))
    assert code == 0
    assert report["threshold_seconds"] == 600
    row = rows_of(report)["unscheduled"]
    assert (row["window_seconds"], row["window_basis"]) == (600, "automation threshold")
