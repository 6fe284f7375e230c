"""`splendor-flows doctor` against the emulator: as it is, with assumed routes switched off, and with
routes answering another shape. No Prefect server is involved: the command only talks to the API."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from splendor_api import ROUTES, Idempotency, SplendorClient, SplendorConfig
from splendor_api.probe import ABSENT_PATH_VALUES
from splendor_api.routes import Probe, Route
from splendor_emulator import Emulator, running_emulator
from splendor_emulator.reshape import ShapeChange
from splendor_flows.cli.console import console
from splendor_flows.cli.main import app
from tests.emulator.helpers import ADMIN, MEMBER, connected_source, fast_config, wait_ingest_ready, wait_run

CLI = Path(sys.executable).with_name("splendor-flows")
LIST_RUNS = "GET /v1/admin/airbyte-sources/{source_id}/runs"
CONNECTION = "POST /v1/admin/airbyte-sources/{source_id}/connection"


def with_history(emu: Emulator) -> int:
    """A connected Stripe source with one finished sync handed to ingestion, every ingest run ready: a
    tenant whose state no longer moves by itself, so any change after the doctor ran is the doctor's."""
    with httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {ADMIN}", "X-Splendor-Tenant-Id": "acme"}
    ) as client:
        source_id = connected_source(client)
        run = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"})
        wait_run(client, run.json()["run"]["run_id"])
        ingest = client.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest").json()["ingest_runs"]
        wait_ingest_ready(client, [i["ingest_run_id"] for i in ingest])
    return source_id


def emulator(**switches: Any) -> Any:
    return running_emulator(fast_config(**switches))


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with emulator() as running:
        with_history(running)
        yield running


def doctor(emu: Emulator, *args: str, token: str = ADMIN, **env: str) -> tuple[int, str]:
    """Run the command in this process as a user would type it; returns the exit code and the output."""
    settings = {
        "SPLENDOR_API_BASE": emu.base_url,
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": token,
        "COLUMNS": "300",
        **env,
    }
    # The CLI's console took its width when it was first imported in this process (another test may have
    # imported it under a narrow COLUMNS): the table is read cell by cell, so it must not wrap.
    width = console.width
    console.width = 300
    try:
        result = CliRunner().invoke(app, ["doctor", *args], env=settings)
    finally:
        console.width = width
    return result.exit_code, result.output


def rows(output: str) -> dict[str, str]:
    """The table's row per route template: method, path and the rest of the line."""
    found: dict[str, str] = {}
    for route in ROUTES.values():
        key = f"{route.method} {route.template}"
        for line in output.splitlines():
            cells = [c.strip() for c in line.strip("│ ").split("│")]
            if len(cells) >= 5 and cells[0] == route.method and cells[1] == route.template:
                found[key] = " | ".join(cells[2:])
    return found


def result_of(report: dict[str, Any], name: str) -> str:
    entry = next(r for r in report["routes"] if r["name"] == name)
    result: str = entry["result"] + (f": {entry['detail']}" if entry["detail"] else "")
    return result


def test_all_good_exits_0_with_every_route_ok(emu: Emulator) -> None:
    env = {
        **os.environ,
        "SPLENDOR_API_BASE": emu.base_url,
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": ADMIN,
        "COLUMNS": "300",
    }
    # The installed command, once, as a user runs it.
    result = subprocess.run([str(CLI), "doctor"], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert len(table) == len(ROUTES)
    for key, row in table.items():
        expected = "unchecked" if key == "PUT {url}" else "ok"
        assert row.split(" | ")[1] == expected, (key, row)
    for check in ("token", "tenant", "admin role"):
        assert any(
            line.strip("│ ").startswith(f"{check} ") and "│ ok " in line
            for line in result.stdout.splitlines()
        )
    assert "degraded:" not in result.stdout
    assert "OK: every required route works" in result.stdout
    assert ADMIN not in result.stdout + result.stderr


def test_reads_are_called_on_the_tenants_objects_and_parse(emu: Emulator) -> None:
    code, output = doctor(emu, "--json")
    report = json.loads(output)
    assert code == 0 and report["ok"] is True
    by_name = {r["name"]: r for r in report["routes"]}
    # Every read the pipelines lean on was called for real (its answer parsed), not only probed.
    for name in (
        "get_airbyte_source",
        "discover_schema",
        "list_runs",
        "get_run",
        "refresh_run",
        "get_ingest_run",
    ):
        assert by_name[name]["how"].startswith("called on"), by_name[name]
        assert by_name[name]["result"] == "ok"


def test_doctor_changes_nothing(emu: Emulator) -> None:
    before = emu.state("acme")
    emu.reset_counters()

    code, _ = doctor(emu)

    assert emu.state("acme") == before  # no source, run, credential, ingest run or upload created or changed
    counts = emu.counts()
    templates = {f"{r.method} {r.template}": r for r in ROUTES.values()}
    for mutation in emu.mutations():
        route = templates[f"{mutation['method']} {mutation['route']}"]
        if route.idempotency is Idempotency.MUTATING:
            # Every write was turned down before acting: an absent id or a refused body.
            assert mutation["status"] in (404, 422), mutation
    # Every write of the table was probed exactly once, the presigned PUT never.
    for key, route in templates.items():
        if route.idempotency is Idempotency.MUTATING:
            assert counts.get(key) == 1, (key, counts)
    assert not any(key.startswith("PUT /_objects") for key in counts)
    assert code == 0


def test_optional_assumed_route_off_is_named_with_what_degrades(emu: Emulator) -> None:
    emu.config.routes_off.append(LIST_RUNS)
    code, output = doctor(emu)

    assert code == 0, output
    assert rows(output)[LIST_RUNS].split(" | ")[:2] == ["optional", "not found"]
    assert (
        f"degraded: without {LIST_RUNS}, a lost start-sync answer stops the pipeline and names the attempt"
        in output
    )
    # The other reads found their objects another way: the run through its ingest runs.
    assert rows(output)["GET /v1/admin/airbyte-runs/{run_id}"].split(" | ")[1] == "ok"


def test_the_existing_list_runs_switch_is_seen_the_same_way() -> None:
    with emulator(list_runs_route=False) as emu:
        with_history(emu)
        code, output = doctor(emu, "--json")
    assert code == 0
    assert result_of(json.loads(output), "list_runs") == "not found"


def test_required_route_off_exits_1_and_is_named(emu: Emulator) -> None:
    emu.config.routes_off.append(CONNECTION)  # after the tenant's source was connected through it
    code, output = doctor(emu)

    assert code == 1, output
    assert rows(output)[CONNECTION].split(" | ")[:2] == ["required", "not found"]
    fail = next(line for line in output.splitlines() if line.startswith("FAIL:"))
    assert CONNECTION in fail and "not found" in fail
    assert "degraded:" not in output  # a required route fails; nothing optional is missing


@pytest.mark.parametrize(
    ("change", "name", "shown", "code"),
    [
        # An optional assumed route whose items lost a field the pipeline acts on.
        (ShapeChange(route=LIST_RUNS, field="runs.*.status", change="drop"), "list_runs", "runs.0.status", 0),
        # A required route whose envelope is named otherwise.
        (
            ShapeChange(
                route="GET /v1/admin/connector-providers", field="providers", change="rename", to="items"
            ),
            "list_providers",
            "providers",
            1,
        ),
        # A required assumed route whose object holds a field of another type.
        (
            ShapeChange(
                route="GET /v1/admin/airbyte-sources/{source_id}",
                field="airbyte.source_id",
                change="replace",
                to="x",
            ),
            "get_airbyte_source",
            "airbyte.source_id",
            1,
        ),
    ],
    ids=["optional-item-field", "required-envelope", "required-field-type"],
)
def test_route_answering_another_shape_names_the_field(
    emu: Emulator, change: ShapeChange, name: str, shown: str, code: int
) -> None:
    emu.config.reshaped.append(change)
    exit_code, output = doctor(emu, "--json")

    assert exit_code == code, output
    assert result_of(json.loads(output), name) == f"shape differs: {shown}"


def test_identity_with_another_shape_leaves_tenant_and_role_unchecked() -> None:
    change = ShapeChange(route="GET /v1/me", field="tenants.*.is_admin", change="drop")
    with emulator(reshaped=[change]) as emu:
        code, output = doctor(emu, "--json")
    report = json.loads(output)
    assert code == 1
    assert result_of(report, "me") == "shape differs: tenants.0.is_admin"
    assert [c["result"] for c in report["identity"]] == ["ok", "unchecked", "unchecked"]


def test_member_token_fails_the_admin_role() -> None:
    with emulator() as emu:
        code, output = doctor(emu, "--json", token=MEMBER)
    report = json.loads(output)
    assert code == 1
    admin = report["identity"][2]
    assert (admin["name"], admin["result"], admin["detail"]) == ("admin role", "refused", "not admin")
    # The admin routes are still probed, and say how the API turned the member away.
    assert result_of(report, "list_providers") == "refused: 403"


def test_refused_token_stops_before_any_route() -> None:
    with emulator() as emu:
        emu.reset_counters()
        code, output = doctor(emu, "--json", token="not-a-real-token-zz")
        counts = emu.counts()
    report = json.loads(output)
    assert code == 1
    assert report["identity"][0]["result"] == "refused" and report["identity"][0]["detail"] == "401"
    assert counts == {"GET /v1/me": 1}
    assert all(r["result"] == "unchecked" for r in report["routes"] if r["name"] != "me")
    assert "not-a-real-token-zz" not in output


def test_empty_tenant_probes_the_reads_it_has_nothing_for() -> None:
    with emulator() as emu:
        code, output = doctor(emu, "--json")
    report = json.loads(output)
    assert code == 0, output
    source = next(r for r in report["routes"] if r["name"] == "get_airbyte_source")
    assert source["result"] == "ok" and "the tenant has no connector source to read" in source["how"]


def test_a_tenant_holding_the_probes_absent_key_leaves_the_writes_unchecked() -> None:
    with emulator() as emu:
        with httpx.Client(
            base_url=emu.base_url,
            headers={"Authorization": f"Bearer {ADMIN}", "X-Splendor-Tenant-Id": "acme"},
        ) as client:
            connected_source(client, source_key=str(ABSENT_PATH_VALUES["source_key"]))
        emu.reset_counters()
        code, output = doctor(emu, "--json")
        counts = emu.counts()
    report = json.loads(output)
    assert code == 1  # required writes could not be checked
    assert result_of(report, "initiate_upload") == "unchecked"
    assert result_of(report, "start_sync") == "unchecked"
    assert "POST /v1/ingest/sources/{source_key}/uploads" not in counts
    assert "POST /v1/admin/airbyte-sources/{source_id}/sync" not in counts


def test_bad_configuration_is_one_line_and_exit_2() -> None:
    with emulator() as emu:
        code, output = doctor(emu, SPLENDOR_TENANT_ID="", token="acme-admin-token")
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: SPLENDOR_TENANT_ID is not set"), output


def test_unreachable_api_is_exit_2() -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = {
        "SPLENDOR_API_BASE": f"http://127.0.0.1:{port}",
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": ADMIN,
        "SPLENDOR_MAX_RETRY_SECONDS": "1",
    }
    started = time.monotonic()
    result = CliRunner().invoke(app, ["doctor"], env=settings)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: no answer from http://127.0.0.1:{port}")
    assert time.monotonic() - started < 30


# --- the pieces the command stands on -----------------------------------------------------------------


def test_a_mutating_route_cannot_be_described_as_called() -> None:
    with pytest.raises(ValueError, match="a mutating route cannot be probed by calling it"):
        Route("x", "POST", "/v1/x/{source_id}", Idempotency.MUTATING, ROUTES["me"].tag, ROUTES["me"].tag)
    with pytest.raises(ValueError, match="must say what degrades"):
        Route("x", "GET", "/v1/x", Idempotency.READ, ROUTES["me"].tag, ROUTES["me"].tag, required=False)


async def test_probe_refuses_a_route_it_cannot_call_safely() -> None:
    config = SplendorConfig(api_base="http://127.0.0.1:9", tenant_id="acme", token=ADMIN)
    async with SplendorClient(config) as client:
        assert ROUTES["put_object"].probe is Probe.UNCHECKED
        with pytest.raises(ValueError, match="cannot be probed safely"):
            await client.probe_absent("put_object")


def test_a_route_switched_off_never_reaches_its_handler() -> None:
    sync = "POST /v1/admin/airbyte-sources/{source_id}/sync"
    with emulator(routes_off=[sync]) as emu:
        with httpx.Client(
            base_url=emu.base_url,
            headers={"Authorization": f"Bearer {ADMIN}", "X-Splendor-Tenant-Id": "acme"},
        ) as client:
            source_id = connected_source(client)
            answer = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"})
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"})
        assert emu.runs("acme") == []


def test_switches_naming_no_route_are_refused() -> None:
    with (
        pytest.raises(ValueError, match=r"GET /v1/admin/nothing"),
        emulator(routes_off=["GET /v1/admin/nothing"]),
    ):
        pass


def test_the_docs_table_names_every_route_with_its_need() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "doctor.md").read_text()
    for route in ROUTES.values():
        line = next((ln for ln in text.splitlines() if ln.startswith(f"| `{route.name}` |")), None)
        assert line is not None, f"docs/doctor.md has no row for {route.name}"
        cells = [c.strip() for c in line.split("|")]
        assert cells[2] == f"`{route.method} {route.template}`", line
        assert cells[4] == ("required" if route.required else "optional"), line
