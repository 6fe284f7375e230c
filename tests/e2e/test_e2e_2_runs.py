"""Runs through the deployed deployments and a process worker: manual, concurrent and event-triggered."""

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_api import SplendorClient, SplendorConfig, models

from .conftest import (
    BIN,
    FINAL,
    PREFECT,
    TOKEN,
    Proc,
    Stack,
    api,
    deployment_id,
    flow_runs,
    run_async,
    wait_for_runs,
)

pytestmark = pytest.mark.e2e

SOURCE = "e2e-stripe"
CATALOG = "e2e-catalog"
ENQUEUE = "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest"
SECRET_BLOCK = "e2e-stripe-credentials"


def spec(**overrides: Any) -> dict[str, Any]:
    values = {
        "provider_key": "stripe",
        "source_key": SOURCE,
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "streams": ["charges", "customers"],
        "credentials_secret": SECRET_BLOCK,
    }
    return values | overrides


def create_run(stack: Stack, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    path = f"/deployments/{deployment_id(stack, deployment)}/create_flow_run"
    run: dict[str, Any] = api(stack, "POST", path, json={"parameters": parameters})
    return run


def wait_run(stack: Stack, deployment: str, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
    [run] = wait_for_runs(stack, deployment, lambda r: r["id"] == run_id, timeout=timeout)
    return run


def splendor_call(stack: Stack, action: Any) -> Any:
    async def go() -> Any:
        config = SplendorConfig(api_base=stack.emulator.base_url, tenant_id="acme", token=TOKEN)
        async with SplendorClient(config) as client:
            return await action(client)

    return run_async(go())


def emit_raw(stack: Stack, event_id: str, source_key: str, payload: dict[str, Any]) -> None:
    """What any uploader can do without Prefect installed: POST the event to the server's /events."""
    event = {
        "id": event_id,
        "occurred": datetime.now(UTC).isoformat(),
        "event": "splendor.upload.completed",
        "resource": {
            "prefect.resource.id": f"splendor.source.acme.{source_key}",
            "splendor.tenant": "acme",
            "splendor.source_key": source_key,
        },
        "payload": payload,
    }
    api(stack, "POST", "/events", json=[event])


def seconds(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@pytest.fixture(scope="module")
def connected(deployed: Stack, worker: Proc) -> dict[str, Any]:
    """A manual run of connect-source with good parameters, as an admin would start it from the UI."""
    from prefect.blocks.system import Secret

    with temporary_settings(updates={PREFECT_API_URL: deployed.api_url}):
        Secret(
            value={
                "api_key": "sk_test_e2e0000000000000",
                "account_id": "acct_e2e",
                "start_date": "2026-01-01",
            }
        ).save(SECRET_BLOCK, overwrite=True)
    run = create_run(deployed, "connect-source", {"spec": spec()})
    return wait_run(deployed, "connect-source", run["id"], timeout=120)


def test_manual_run_bad_parameters_rejected_good_run_completes(
    deployed: Stack, connected: dict[str, Any]
) -> None:
    bad = deployed.run(
        PREFECT,
        "deployment",
        "run",
        "connect-source/connect-source",
        "--params",
        json.dumps({"spec": spec(bucket="Not_A_Bucket")}),
        check=False,
    )
    assert bad.returncode != 0
    assert "Validation failed" in bad.stdout + bad.stderr
    assert "bucket" in bad.stdout + bad.stderr
    assert connected["state"]["type"] == "COMPLETED", connected["state"]
    source = splendor_call(deployed, lambda c: c.find_source(SOURCE))
    assert source is not None


def test_two_sync_source_runs_of_one_source_take_turns_on_the_source(
    deployed: Stack, connected: dict[str, Any]
) -> None:
    """No deployment-wide limit: both runs start, and the source's own slot keeps their syncs apart."""
    source = splendor_call(deployed, lambda c: c.find_source(SOURCE))
    before = {r.run_id for r in splendor_call(deployed, lambda c: c.list_runs(source.source_id))}
    first = create_run(deployed, "sync-source", {"source_key": SOURCE, "trigger": "manual"})
    second = create_run(deployed, "sync-source", {"source_key": SOURCE, "trigger": "manual"})
    done = {
        r["id"]: r
        for r in wait_for_runs(
            deployed, "sync-source", lambda r: r["id"] in {first["id"], second["id"]}, 2, 120
        )
    }
    assert all(r["state"]["type"] == "COMPLETED" for r in done.values())
    runs = sorted(
        (
            r
            for r in splendor_call(deployed, lambda c: c.list_runs(source.source_id))
            if r.run_id not in before
        ),
        key=lambda r: r.created_at,
    )
    # Each pipeline started its own sync, the second only once the first one's had ended.
    assert len(runs) == 2, [r.run_id for r in runs]
    assert runs[1].created_at >= runs[0].completed_at, "the two syncs of the source ran at the same time"


def test_upload_event_starts_after_upload_run(deployed: Stack, worker: Proc, tmp_path: Path) -> None:
    splendor_call(
        deployed,
        lambda c: c.create_hosted_source(
            models.CreateHostedSource(source_key=CATALOG, name="Catalog", dataset_id="products")
        ),
    )
    data = tmp_path / "products.jsonl"
    data.write_text("".join(json.dumps({"sku": i, "name": f"product {i}" * 8}) + "\n" for i in range(2500)))
    assert data.stat().st_size > 3 * 64 * 1024  # multipart with the stack's 64 KiB parts
    upload = deployed.run(str(BIN / "splendor-flows"), "upload", CATALOG, str(data), timeout=90)
    emitted = time.time()
    assert "multipart" in upload.stdout

    [run] = wait_for_runs(deployed, "after-upload", lambda r: r["parameters"].get("source_key") == CATALOG)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    params = run["parameters"]
    assert params["key"].endswith("/products.jsonl")
    assert params["upload_session_id"].startswith("ups_")
    assert params["tenant"] == "acme"  # the event's tenant, checked by the run against its credentials
    uuid.UUID(params["event_id"])  # rendered with `| string`, not an InvalidJinja failure
    print(f"upload event -> after-upload completed in {seconds(run['end_time']) - emitted:.1f} s")
    [upload_state] = [
        u for u in deployed.emulator.uploads("acme") if u["upload_session_id"] == params["upload_session_id"]
    ]
    assert upload_state["mode"] == "multipart"


def test_duplicate_event_delivery_ingests_once(
    deployed: Stack, worker: Proc, connected: dict[str, Any]
) -> None:
    event_id = str(uuid.uuid4())
    before = deployed.emulator.count(ENQUEUE)
    emit_raw(deployed, event_id, SOURCE, {"key": "drops/extra.jsonl"})
    emit_raw(deployed, event_id, SOURCE, {"key": "drops/extra.jsonl"})
    mine = lambda r: r["parameters"].get("event_id") == event_id  # noqa: E731
    [run] = wait_for_runs(deployed, "after-upload", mine)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert deployed.emulator.count(ENQUEUE) - before == 1

    # A redelivery Prefect itself does not recognise (e.g. after a server restart) still ingests once:
    # the event id is the checkpoint key, so the second run finds every step finished.
    again = create_run(deployed, "after-upload", run["parameters"])
    assert wait_run(deployed, "after-upload", again["id"])["state"]["type"] == "COMPLETED"
    assert len([r for r in flow_runs(deployed, "after-upload") if mine(r)]) == 2
    assert deployed.emulator.count(ENQUEUE) - before == 1


def test_ui_retry_of_a_failed_run_resumes_at_the_failed_step(deployed: Stack, worker: Proc) -> None:
    """The Retry button: the same flow run goes back to AwaitingRetry and the worker runs it again.
    Finished steps come back from their checkpoints, so the source is not created a second time."""
    emu = deployed.emulator
    provision = "POST /v1/admin/airbyte-sources/{source_id}/provision"
    create = "POST /v1/admin/airbyte-sources"
    emu.add_fault(route=provision, kind="unavailable", retry_after="0")
    try:
        run = create_run(deployed, "connect-source", {"spec": spec(source_key="e2e-retry")})
        failed = wait_run(deployed, "connect-source", run["id"], timeout=120)
    finally:
        emu.clear_faults()
    assert failed["state"]["type"] == "FAILED", failed["state"]
    assert "[provision]" in (failed["state"]["message"] or "")
    creates_before = emu.counts().get(create, 0)

    # What the UI's Retry button sends (prefect's UI: retryFlowRun).
    api(
        deployed,
        "POST",
        f"/flow_runs/{run['id']}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}},
    )
    deadline = time.monotonic() + 120
    retried = api(deployed, "GET", f"/flow_runs/{run['id']}")
    while not (retried["run_count"] >= 2 and retried["state"]["type"] in FINAL):
        assert time.monotonic() < deadline, f"the retried run did not finish: {retried['state']}"
        time.sleep(0.5)
        retried = api(deployed, "GET", f"/flow_runs/{run['id']}")
    assert retried["state"]["type"] == "COMPLETED", retried["state"]
    assert retried["run_count"] == 2
    assert emu.counts().get(create, 0) == creates_before, "the retry created the source again"
    assert len([s for s in emu.sources("acme") if s["source_key"] == "e2e-retry"]) == 1
