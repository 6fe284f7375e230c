"""The command line (flags, fault specs, config files) and the served OpenAPI document."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from splendor_emulator import Emulator

from .helpers import ADMIN, source_body

FLAGS = [
    "--host",
    "--port",
    "--state",
    "--faults",
    "--config",
    "--sync-seconds",
    "--ingest-seconds",
    "--latency-ms",
    "--bucket-root",
    "--fault",
    "--records-per-stream",
    "--upload-single-max-bytes",
    "--upload-part-size-bytes",
    "--log-level",
]


def test_help_lists_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splendor_emulator", "--help"], capture_output=True, text=True, check=True
    )
    for flag in FLAGS:
        assert flag in result.stdout, flag
    assert "unavailable:POST /v1/admin/airbyte-sources:count=3:retry_after=1" in result.stdout


def test_bad_fault_spec_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splendor_emulator", "--fault", "explode:*"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "bad configuration" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_serves_with_flags_files_and_state(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(
        json.dumps(
            {"faults": [{"route": "GET /v1/admin/connector-providers", "kind": "bad_gateway", "count": 1}]}
        )
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"tenants": [{"tenant_id": "acme", "name": "Acme", "plan": "standard"}],
                                  "tokens": [{"token": "t0k", "user_id": "u1", "roles": {"acme": "Member"}}],
                                  "api_keys": []}))  # fmt: skip
    port = _free_port()
    command = [
        sys.executable, "-m", "splendor_emulator", "--port", str(port), "--state", str(tmp_path / "s.sqlite"),
        "--config", str(config), "--faults", str(faults), "--sync-seconds", "0.2", "--ingest-seconds", "0.05",
        "--fault", "unavailable:POST /v1/admin/airbyte-sources:count=1:retry_after=2",
        "--log-level", "warning",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/_emulator/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        client = httpx.Client(
            base_url=base, headers={"Authorization": "Bearer t0k", "X-Splendor-Tenant-Id": "acme"}
        )
        assert client.get("/v1/admin/connector-providers").status_code == 502  # from --faults
        assert (
            client.get("/v1/admin/connector-providers").status_code == 200
        )  # standard plan: member is admin
        failed = client.post("/v1/admin/airbyte-sources", json=source_body())
        assert failed.status_code == 503 and failed.headers["retry-after"] == "2"  # from --fault
        assert client.post("/v1/admin/airbyte-sources", json=source_body()).status_code == 200
        assert httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 401
        assert (tmp_path / "s.sqlite").exists() and (tmp_path / "s.sqlite.buckets").is_dir()
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_openapi_matches_the_contract(emu: Emulator) -> None:
    spec = httpx.get(f"{emu.base_url}/openapi.json").json()
    assert spec["info"] == {
        "title": "Splendor API",
        "version": "1.0.0",
        "description": spec["info"]["description"],
    }
    paths = spec["paths"]
    expected = {
        "/v1/me": {"get"},
        "/v1/admin/connector-providers": {"get"},
        "/v1/admin/connector-providers/{provider_key}/airbyte-discovery": {"post"},
        "/v1/admin/airbyte-catalog": {"get"},
        "/v1/admin/airbyte-catalog/{source_definition_id}/discover": {"post"},
        "/v1/admin/airbyte-sources": {"post"},
        "/v1/admin/airbyte-sources/{source_id}": {"get"},
        "/v1/admin/airbyte-sources/{source_id}/provision": {"post"},
        "/v1/admin/airbyte-sources/{source_id}/oauth/complete": {"post"},
        "/v1/admin/airbyte-sources/{source_id}/discover-schema": {"post"},
        "/v1/admin/airbyte-sources/{source_id}/connection": {"post"},
        "/v1/admin/airbyte-sources/{source_id}/sync": {"post"},
        "/v1/admin/airbyte-sources/{source_id}/enqueue-ingest": {"post"},
        "/v1/admin/airbyte-runs/{run_id}/refresh": {"post"},
        "/v1/admin/airbyte-runs/{run_id}": {"get"},
        "/v1/admin/sources": {"get"},
        "/v1/admin/sources/{source_id}": {"put"},
        "/v1/admin/hosted-sources": {"post"},
        "/v1/admin/sources/{source_id}/ingest-token": {"post", "delete"},
        "/v1/ingest/runs": {"get"},
        "/v1/ingest/runs/{ingest_run_id}": {"get"},
        "/v1/ingest/sources/{source_key}/uploads": {"post"},
        "/v1/ingest/sources/{source_key}/uploads/parts": {"post"},
        "/v1/ingest/sources/{source_key}/uploads/complete": {"post"},
        "/v1/admin/hosted-uploads/{upload_session_id}/readiness": {"get"},
        "/v1/ingest/sources/{source_key}/logs": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert not [p for p in paths if p.startswith(("/_emulator", "/_objects"))]
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    schemas = spec["components"]["schemas"]
    run_fields = set(schemas["ConnectorRunItem"]["properties"])
    assert {"run_id", "status", "records_synced", "bytes_synced", "error_message", "started_at"} <= run_fields
    assert set(schemas["ConnectorRunItem"]["properties"]["status"]["enum"]) == {
        "pending", "running", "incomplete", "succeeded", "failed", "cancelled",
    }  # fmt: skip
    assert paths["/v1/ingest/sources/{source_key}/logs"]["post"]["responses"].keys() >= {"202"}
    create = schemas["CreateAirbyteSourceRequest"]["properties"]
    assert create["connector_key"]["maxLength"] == 128 and create["iam_role_arn"]["maxLength"] == 2048
