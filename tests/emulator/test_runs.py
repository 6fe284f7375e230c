"""Run lifecycle read off the clock, and the run faults (§0 run statuses, §5.1)."""

import httpx

from splendor_emulator import Emulator

from .helpers import connected_source, wait_run


def _sync(client: httpx.Client, source_id: int) -> dict:
    response = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"})
    assert response.status_code == 200, response.text
    return response.json()["run"]


def test_statuses_progress_and_timestamps(admin: httpx.Client) -> None:
    source_id = connected_source(admin)
    run = _sync(admin, source_id)
    seen = wait_run(admin, run["run_id"], poll=0.02)
    statuses = [r["status"] for r in seen]
    assert statuses[0] in ("pending", "running") and "running" in statuses and statuses[-1] == "succeeded"
    final = seen[-1]
    assert final["started_at"] is not None and final["completed_at"] >= final["started_at"]
    assert final["airbyte_job_id"] == f"job_{run['run_id']}" and final["error_message"] is None
    assert all(r["records_synced"] is None for r in seen[:-1])


def test_second_sync_while_running_is_409_with_run_id(admin: httpx.Client) -> None:
    source_id = connected_source(admin)
    run = _sync(admin, source_id)
    busy = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "scheduled"})
    assert busy.status_code == 409
    assert busy.json()["detail"]["code"] == "sync_in_progress"
    assert busy.json()["detail"]["run_id"] == run["run_id"]
    wait_run(admin, run["run_id"])
    assert _sync(admin, source_id)["run_id"] == run["run_id"] + 1


def test_run_incomplete_passes_through_incomplete_then_succeeds(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(kind="run_incomplete", source_key="stripe", times=2, count=1)
    source_id = connected_source(admin)
    seen = [r["status"] for r in wait_run(admin, _sync(admin, source_id)["run_id"], poll=0.02)]
    assert "incomplete" in seen and seen[-1] == "succeeded"
    # incomplete is not terminal: running resumes after it
    first = seen.index("incomplete")
    assert "running" in seen[first:]
    # the fault was used up: the next run goes straight through
    assert "incomplete" not in [
        r["status"] for r in wait_run(admin, _sync(admin, source_id)["run_id"], poll=0.02)
    ]


def test_run_fail_reports_error_and_lands_nothing(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(kind="run_fail", count=1, error_message="Stripe API returned 401")
    source_id = connected_source(admin)
    final = wait_run(admin, _sync(admin, source_id)["run_id"])[-1]
    assert final["status"] == "failed" and final["error_message"] == "Stripe API returned 401"
    assert final["completed_at"] is not None
    assert not list(emu.bucket_root.rglob("*.jsonl"))
    enqueue = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={"run_id": final["run_id"]}
    )
    assert enqueue.status_code == 409 and enqueue.json()["detail"]["code"] == "no_landed_data"
    assert wait_run(admin, _sync(admin, source_id)["run_id"])[-1]["status"] == "succeeded"


def test_zero_records_success(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(kind="run_zero_records", count=1)
    source_id = connected_source(admin)
    final = wait_run(admin, _sync(admin, source_id)["run_id"])[-1]
    assert (final["status"], final["records_synced"], final["bytes_synced"]) == ("succeeded", 0, 0)
    enqueue = admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest")
    assert enqueue.status_code == 409 and enqueue.json()["detail"]["code"] == "no_landed_data"


def test_run_faults_filter_by_source_key(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(kind="run_fail", source_key="other")
    source_id = connected_source(admin)
    assert wait_run(admin, _sync(admin, source_id)["run_id"])[-1]["status"] == "succeeded"


def test_cancel(admin: httpx.Client) -> None:
    source_id = connected_source(admin)
    run = _sync(admin, source_id)
    cancelled = admin.post(f"/v1/admin/airbyte-runs/{run['run_id']}/cancel").json()["run"]
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"] is not None
    again = admin.post(f"/v1/admin/airbyte-runs/{run['run_id']}/cancel")
    assert again.status_code == 409 and again.json()["detail"]["code"] == "run_not_active"
    assert _sync(admin, source_id)["status"] == "pending"  # a cancelled run no longer blocks a new sync


def test_unknown_run_is_404(admin: httpx.Client) -> None:
    assert admin.post("/v1/admin/airbyte-runs/424242/refresh").status_code == 404
    assert admin.get("/v1/admin/airbyte-runs/424242").status_code == 404


def test_enqueue_defaults_to_latest_landed_run(admin: httpx.Client, emu: Emulator) -> None:
    source_id = connected_source(admin)
    first = wait_run(admin, _sync(admin, source_id)["run_id"])[-1]
    second = wait_run(admin, _sync(admin, source_id)["run_id"])[-1]
    runs = admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest").json()["ingest_runs"]
    assert {r["connector_run_id"] for r in runs} == {second["run_id"]}
    older = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={"run_id": first["run_id"]}
    )
    assert {r["connector_run_id"] for r in older.json()["ingest_runs"]} == {first["run_id"]}
    assert len(emu.ingest_runs("acme")) == 6
    assert len(emu.runs("acme", source_id)) == 2


def test_list_runs_newest_first_with_limit(admin: httpx.Client) -> None:
    source_id = connected_source(admin)
    first = _sync(admin, source_id)
    wait_run(admin, first["run_id"])
    second = _sync(admin, source_id)
    listed = admin.get(f"/v1/admin/airbyte-sources/{source_id}/runs")
    assert listed.status_code == 200, listed.text
    assert [r["run_id"] for r in listed.json()["runs"]] == [second["run_id"], first["run_id"]]
    assert listed.json()["runs"][1]["status"] == "succeeded"
    one = admin.get(f"/v1/admin/airbyte-sources/{source_id}/runs", params={"limit": 1}).json()["runs"]
    assert [r["run_id"] for r in one] == [second["run_id"]]
    assert admin.get("/v1/admin/airbyte-sources/999999/runs").status_code == 404


def test_list_runs_can_be_switched_off_like_an_api_without_the_page(
    admin: httpx.Client, emu: Emulator
) -> None:
    source_id = connected_source(admin)
    emu.runtime.config.list_runs_route = False
    try:
        missing = admin.get(f"/v1/admin/airbyte-sources/{source_id}/runs")
    finally:
        emu.runtime.config.list_runs_route = True
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
