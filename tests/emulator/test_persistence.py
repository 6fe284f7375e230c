"""With a state file, sources, credentials status, runs, ingest runs and uploads survive a restart, and runs
keep progressing by their own clock."""

import time
from pathlib import Path

import httpx

from splendor_emulator import running_emulator

from .helpers import ADMIN, STRIPE_CONFIG, fast_config, source_body, wait_run


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {ADMIN}", "X-Splendor-Tenant-Id": "acme"}
    )


def test_restart_keeps_state_and_run_progress(tmp_path: Path) -> None:
    state = tmp_path / "emulator.sqlite"
    config = fast_config(sync_seconds=1.0)
    with running_emulator(config, state_path=state) as first:
        client = _client(first.base_url)
        source_id = client.post("/v1/admin/airbyte-sources", json=source_body()).json()["source"]["source_id"]
        client.post(
            f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": STRIPE_CONFIG}
        )
        client.post(f"/v1/admin/airbyte-sources/{source_id}/connection")
        done = wait_run(
            client, client.post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]["run_id"]
        )[-1]
        ingest = client.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest").json()["ingest_runs"]
        client.post(
            "/v1/admin/hosted-sources", json={"source_key": "catalog", "name": "C", "dataset_id": "c"}
        )
        upload = client.post(
            "/v1/ingest/sources/catalog/uploads", json={"content_type": "text/plain", "object_size_bytes": 2}
        ).json()
        running = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]
        assert running["status"] == "pending"
        before = client.get(f"/v1/admin/airbyte-sources/{source_id}").json()
        port = int(first.base_url.rsplit(":", 1)[1])
        client.close()

    # Same address as before, as a restarted server would have: presigned URLs stay valid.
    with running_emulator(config, state_path=state, port=port) as second:
        client = _client(second.base_url)
        after = client.get(f"/v1/admin/airbyte-sources/{source_id}").json()
        assert after == before
        assert after["airbyte"]["credential_status"] == "ready"
        assert client.post(f"/v1/admin/airbyte-runs/{done['run_id']}/refresh").json()["run"] == done
        # The run that was in flight is still the one in flight (or finished by its clock), never restarted.
        busy = client.post(f"/v1/admin/airbyte-sources/{source_id}/sync")
        assert busy.status_code == 409 and busy.json()["detail"]["run_id"] == running["run_id"]
        finished = wait_run(client, running["run_id"])[-1]
        assert finished["status"] == "succeeded" and finished["created_at"] == running["created_at"]
        # Files of the first run are where they were; the enqueue is still deduplicated.
        again = client.post(
            f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={"run_id": done["run_id"]}
        )
        assert sorted(i["ingest_run_id"] for i in again.json()["ingest_runs"]) == sorted(
            i["ingest_run_id"] for i in ingest
        )
        assert all((second.bucket_root / "acme-connectors" / i["key"]).exists() for i in ingest)
        # Upload sessions survive too: the presigned URL still works and the upload completes.
        assert (
            httpx.put(upload["upload_url"], content=b"hi", headers=upload["required_headers"]).status_code
            == 200
        )
        completed = client.post(
            "/v1/ingest/sources/catalog/uploads/complete",
            json={"upload_session_id": upload["upload_session_id"]},
        )
        assert completed.status_code == 200
        # New ids continue after the old ones.
        new_source = client.post("/v1/admin/airbyte-sources", json=source_body("stripe-2")).json()["source"][
            "source_id"
        ]
        assert new_source > source_id
        assert (
            client.post("/v1/admin/airbyte-sources", json=source_body()).json()["detail"]["code"]
            == "source_key_exists"
        )
        client.close()


def test_memory_mode_writes_no_state_file(tmp_path: Path) -> None:
    with running_emulator(fast_config(bucket_root=tmp_path / "buckets")) as emu:
        client = _client(emu.base_url)
        assert client.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 200
        client.close()
    assert not list(tmp_path.glob("*.sqlite"))
    time.sleep(0)
