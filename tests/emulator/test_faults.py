"""Fault injection: every kind, counting, filtering, and the control endpoints."""

import email.utils
import json
import time

import httpx
import pytest

from splendor_emulator import Emulator, parse_fault_spec

from .conftest import ClientFactory
from .helpers import connected_source, source_body, wait_ingest_ready, wait_run, wait_until

CREATE = "POST /v1/admin/airbyte-sources"
SYNC = "POST /v1/admin/airbyte-sources/{source_id}/sync"


def test_unavailable_rejects_without_effect_and_counts(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(route=CREATE, kind="unavailable", count=2, retry_after="3")
    for _ in range(2):
        response = admin.post("/v1/admin/airbyte-sources", json=source_body())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json()["detail"]["code"] == "service_unavailable"
    assert emu.sources("acme") == []  # nothing was created
    assert admin.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 200
    assert emu.count(CREATE) == 3
    log = [m for m in emu.mutations() if m["route"] == "/v1/admin/airbyte-sources"]
    assert [m["status"] for m in log] == [503, 503, 200]
    assert log[0]["fault"] == "unavailable" and log[0]["tenant"] == "acme"


def test_retry_after_http_date(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(route="*", kind="unavailable", count=1, retry_after="http-date", retry_after_seconds=30)
    response = admin.get("/v1/admin/connector-providers")
    assert response.status_code == 503
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"]).timestamp()
    assert 20 < when - time.time() <= 31


@pytest.mark.parametrize(("kind", "status"), [("bad_gateway", 502), ("server_error", 500)])
def test_5xx_kinds_do_not_mutate(admin: httpx.Client, emu: Emulator, kind: str, status: int) -> None:
    source_id = connected_source(admin)
    emu.add_fault(route=SYNC, kind=kind, count=1)
    response = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync")
    assert response.status_code == status and "detail" in response.json()
    assert emu.runs("acme") == []
    assert admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync").status_code == 200


@pytest.mark.parametrize(
    ("kind", "status"), [("bad_gateway", 502), ("server_error", 500), ("unavailable", 503)]
)
def test_an_echoing_fault_quotes_the_refused_request(
    admin: httpx.Client, emu: Emulator, kind: str, status: int
) -> None:
    # A verbose gateway's error page: what secret audits need, an API error whose text carries a secret.
    source_id = connected_source(admin)
    emu.add_fault(
        route="POST /v1/admin/airbyte-sources/{source_id}/provision", kind=kind, count=1, echo_request=True
    )
    body = {"source_configuration": {"api_key": "sk_test_echoed"}}
    response = admin.post(f"/v1/admin/airbyte-sources/{source_id}/provision", json=body)
    assert response.status_code == status
    text = json.dumps(response.json()["detail"])
    assert "Bearer acme-admin-token" in text and "sk_test_echoed" in text
    # Without the option the detail quotes nothing of the request.
    emu.add_fault(route="POST /v1/admin/airbyte-sources/{source_id}/provision", kind=kind, count=1)
    plain = admin.post(f"/v1/admin/airbyte-sources/{source_id}/provision", json=body)
    assert (
        plain.status_code == status
        and "sk_test_echoed" not in plain.text
        and "acme-admin-token" not in plain.text
    )


def test_drop_after_commits_then_drops_the_connection(admin: httpx.Client, emu: Emulator) -> None:
    source_id = connected_source(admin)
    emu.add_fault(route=SYNC, kind="drop_after", count=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync")
    # The run was started even though the client never heard back: a blind retry now gets 409.
    runs = emu.runs("acme", source_id)
    assert len(runs) == 1
    retry = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync")
    assert retry.status_code == 409 and retry.json()["detail"]["run_id"] == runs[0]["run_id"]
    dropped = [m for m in emu.mutations() if m["dropped"]]
    assert (
        len(dropped) == 1
        and dropped[0]["status"] == 200
        and dropped[0]["path_params"] == {"source_id": str(source_id)}
    )
    assert emu.count(SYNC) == 2


def test_latency_and_hang(client_for: ClientFactory, emu: Emulator) -> None:
    admin = client_for()
    emu.add_fault(route="GET /v1/admin/connector-providers", kind="latency", seconds=0.3, count=1)
    started = time.monotonic()
    assert admin.get("/v1/admin/connector-providers").status_code == 200
    assert time.monotonic() - started >= 0.3

    emu.add_fault(route="POST /v1/admin/airbyte-sources", kind="hang", seconds=1.0, count=1)
    impatient = client_for(timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/admin/airbyte-sources", json=source_body())
    # A hang answers eventually (and does its work); an impatient client just stopped listening.
    created = wait_until("the hung create to do its work", lambda: emu.sources("acme"), timeout=10)
    assert [s["source_key"] for s in created] == ["stripe"]


def test_global_latency(client_for: ClientFactory) -> None:
    from splendor_emulator import running_emulator

    from .helpers import fast_config

    with running_emulator(fast_config(latency_ms=150)) as slow:
        started = time.monotonic()
        response = httpx.get(f"{slow.base_url}/v1/me", headers={"Authorization": "Bearer acme-admin-token"})
        assert response.status_code == 200 and time.monotonic() - started >= 0.15


def test_tenant_filter_rate_and_globs(client_for: ClientFactory, emu: Emulator) -> None:
    emu.add_fault(route="GET /v1/admin/*", kind="server_error", tenant="globex")
    assert client_for().get("/v1/admin/connector-providers").status_code == 200
    globex = client_for("globex-user-token", tenant="globex")
    assert globex.get("/v1/admin/connector-providers").status_code == 500
    emu.clear_faults()
    emu.add_fault(route="/v1/admin/connector-providers", kind="server_error", rate=0.0)
    assert globex.get("/v1/admin/connector-providers").status_code == 200


def test_ingest_fail(admin: httpx.Client, emu: Emulator) -> None:
    emu.add_fault(kind="ingest_fail", count=1)
    source_id = connected_source(admin)
    run_id = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]["run_id"]
    wait_run(admin, run_id)
    ids = [
        i["ingest_run_id"]
        for i in admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest").json()["ingest_runs"]
    ]
    statuses = sorted(i["status"] for i in wait_ingest_ready(admin, ids))
    assert statuses == ["failed", "ready", "ready"]
    failed = admin.get("/v1/ingest/runs", params={"status": "failed"}).json()["runs"][0]
    assert failed["error_code"] == "parse_failed" and failed["failed_at"] is not None


def _enqueue(admin: httpx.Client, source_id: int, run_id: int) -> dict[str, dict[str, object]]:
    response = admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={"run_id": run_id})
    assert response.status_code == 200, response.text
    return {str(i["key"]): i for i in response.json()["ingest_runs"]}


def _failed_run(admin: httpx.Client, emu: Emulator, ingest_error: str) -> tuple[int, int, str]:
    """A synced run whose first object's ingestion failed with `ingest_error`: (source, run, key)."""
    emu.add_fault(kind="ingest_fail", count=1, ingest_error=ingest_error)
    source_id = connected_source(admin)
    run_id = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]["run_id"]
    wait_run(admin, run_id)
    first = _enqueue(admin, source_id, run_id)
    ended = wait_ingest_ready(admin, [str(i["ingest_run_id"]) for i in first.values()])
    failed = [str(i["key"]) for i in ended if i["status"] == "failed"]
    assert len(failed) == 1
    return source_id, run_id, failed[0]


def test_enqueue_again_requeues_a_repairable_failure_once(admin: httpx.Client, emu: Emulator) -> None:
    source_id, run_id, key = _failed_run(admin, emu, "parse_failed")
    failed = admin.get("/v1/ingest/runs", params={"status": "failed"}).json()["runs"][0]
    assert failed["lifecycle"]["repairable"] is True and failed["error_code"] == "parse_failed"

    second = _enqueue(admin, source_id, run_id)
    assert second[key]["ingest_run_id"] != failed["ingest_run_id"]
    assert second[key]["status"] != "failed" and second[key]["connector_run_id"] == run_id
    # Enqueueing once more returns the same runs: nothing is queued twice.
    third = _enqueue(admin, source_id, run_id)
    assert {k: i["ingest_run_id"] for k, i in third.items()} == {
        k: i["ingest_run_id"] for k, i in second.items()
    }

    current = admin.get("/v1/ingest/runs", params={"source_id": source_id}).json()["runs"]
    assert failed["ingest_run_id"] not in {i["ingest_run_id"] for i in current}
    everything = admin.get(
        "/v1/ingest/runs", params={"source_id": source_id, "include_non_current": "true"}
    ).json()["runs"]
    old = next(i for i in everything if i["ingest_run_id"] == failed["ingest_run_id"])
    assert old["status"] == "superseded" and old["error_code"] == "parse_failed"
    assert old["lifecycle"]["repairable"] is False
    [requeued] = wait_ingest_ready(admin, [str(second[key]["ingest_run_id"])])
    assert requeued["status"] == "ready"


def test_enqueue_again_leaves_a_permanent_failure(admin: httpx.Client, emu: Emulator) -> None:
    source_id, run_id, key = _failed_run(admin, emu, "unsupported_format")
    failed = admin.get("/v1/ingest/runs", params={"status": "failed"}).json()["runs"][0]
    assert failed["lifecycle"]["repairable"] is False and failed["error_code"] == "unsupported_format"
    again = _enqueue(admin, source_id, run_id)
    assert again[key]["ingest_run_id"] == failed["ingest_run_id"] and again[key]["status"] == "failed"


def test_control_endpoints_over_http(emu: Emulator, admin: httpx.Client) -> None:
    control = httpx.Client(base_url=emu.base_url)
    assert control.get("/_emulator/health").json()["status"] == "ok"
    added = control.post("/_emulator/faults", json={"route": CREATE, "kind": "unavailable", "count": 1})
    assert added.status_code == 200 and added.json()["remaining"] == 1
    assert control.post("/_emulator/faults", json={"kind": "explode"}).status_code == 422
    assert len(control.get("/_emulator/faults").json()["faults"]) == 1
    assert admin.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 503
    assert control.get("/_emulator/faults").json()["faults"] == []  # used up
    control.post("/_emulator/faults", json={"kind": "server_error"})
    assert control.delete("/_emulator/faults").json() == {"cleared": 1}
    assert control.get("/_emulator/counts").json() == {CREATE: 1}
    assert control.get("/_emulator/counts", params={"route": CREATE}).json() == {CREATE: 1}
    assert control.get("/_emulator/mutations").json()["mutations"][0]["status"] == 503
    assert admin.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 200
    state = control.get("/_emulator/state", params={"tenant": "acme"}).json()
    assert [s["source_key"] for s in state["acme"]["sources"]] == ["stripe"]
    control.post("/_emulator/reset-counters")
    assert control.get("/_emulator/counts").json() == {}
    control.close()


def test_cli_fault_syntax() -> None:
    spec = parse_fault_spec("unavailable:POST /v1/admin/airbyte-sources:count=3:retry_after=1")
    assert (spec.kind, spec.route, spec.count, spec.retry_after) == ("unavailable", CREATE, 3, "1")
    spec = parse_fault_spec("run_incomplete:*:source_key=stripe:times=2")
    assert (spec.route, spec.source_key, spec.times) == ("*", "stripe", 2)
    spec = parse_fault_spec("unavailable:retry_after=http-date:retry_after_seconds=5:tenant=acme")
    assert (spec.route, spec.retry_after, spec.tenant) == ("*", "http-date", "acme")
    spec = parse_fault_spec("ingest_fail::count=1:ingest_error=unsupported_format")
    assert (spec.kind, spec.count, spec.ingest_error) == ("ingest_fail", 1, "unsupported_format")
    assert parse_fault_spec("ingest_fail").ingest_error == "parse_failed"
    for bad in (
        "nope",
        "unavailable:*:count",
        "unavailable:*:count=0",
        "unavailable:*:retry_after=soon",
        "ingest_fail::ingest_error=disk_full",
    ):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)
