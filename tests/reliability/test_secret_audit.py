"""Secret audit: run full pipelines (and failing ones) with a canary API token and canary connector
credentials, then search every output for them. Zero hits allowed.

Outputs searched: captured logs (every logger, DEBUG), Prefect's API logs, the Prefect database file
(raw bytes, WAL included), checkpoint files in result storage, artifacts, events, exception texts and
state messages, the emulator's mutation log, its state file and its state snapshot, and the emulator
CLI's start-up banner. Secret blocks are stored encrypted by the Prefect server, so even the block
document table holds no plain-text canary (checked as part of the raw database scan).
"""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL

from splendor_emulator import EmulatorConfig, UserTokenConfig, running_emulator
from splendor_emulator.config import _default_tokens
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.repair_ingest import repair_ingest
from splendor_flows.flows.sync_source import sync_source
from splendor_flows.orchestration.api import SplendorCredentials
from tests.flows.conftest import stripe_spec

SECRET_BLOCK = "audit-stripe-credentials"
CREDS_BLOCK = "audit-splendor"


def hits(blob: str | bytes, canaries: list[str]) -> list[str]:
    data = blob if isinstance(blob, bytes) else blob.encode("utf-8", "replace")
    return [c for c in canaries if c.encode() in data]


async def prefect_events(api: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        page = (await http.post(f"{api}/events/filter", json={"limit": 50})).json()
        while True:
            events += page["events"]
            if not page.get("next_page"):
                return events
            page = (await http.get(page["next_page"])).json()


async def wait_for_events(api: str, wanted: set[str], timeout: float = 20) -> list[dict[str, Any]]:
    """Events reach the server through a background worker: wait until the pipeline's ones arrived."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await prefect_events(api)
        if wanted <= {e["event"] for e in events} or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.5)


async def every_page(read: Any) -> list[Any]:
    """Every record a Prefect read method returns, page by page: the server answers at most 200 at a
    time, and the test server also holds the records of the other tests its process ran."""
    records: list[Any] = []
    while page := await read(offset=len(records)):
        records += page
    return records


def database_files() -> list[Path]:
    url = str(PREFECT_API_DATABASE_CONNECTION_URL.value() or "")
    assert url.startswith("sqlite"), f"the audit expects the harness's SQLite database, got {url!r}"
    path = Path(url.split(":///", 1)[1].split("?", 1)[0])
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]


async def test_no_secret_reaches_any_output(
    tmp_path: Path,
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler, APILogWorker

    # Prefect's event and log workers are process-wide and keep the API they were started with; in a
    # full test run that is another suite's test server. Restart them on this harness's API.
    await EventsWorker.drain_all(at_exit=False)
    await APILogWorker.drain_all(at_exit=False)

    token = f"canary-tok-{uuid.uuid4().hex}"
    credential = f"canary-cred-{uuid.uuid4().hex}"
    canaries = [token, credential]
    caplog.set_level(logging.DEBUG)
    for name in ("splendor_api", "httpx", "httpcore", "prefect", "uvicorn", "splendor_emulator"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    config = EmulatorConfig(
        tokens=[
            *_default_tokens(),
            UserTokenConfig(token=token, user_id="canary", roles={"acme": "Admin"}),
        ],
        sync_seconds=0.4,
        ingest_seconds=0.05,
        bucket_root=tmp_path / "buckets",
    )
    state_file = tmp_path / "emulator.sqlite"
    errors: list[str] = []
    with running_emulator(config, state_path=state_file, log_level="debug") as emu:
        await SplendorCredentials(api_base=emu.base_url, tenant_id="acme", token=token).save(
            CREDS_BLOCK, overwrite=True
        )
        await Secret(
            value={"api_key": f"sk_test_{credential}", "account_id": "acct_audit", "start_date": "2026-01-01"}
        ).save(SECRET_BLOCK, overwrite=True)
        key = f"audit-{uuid.uuid4().hex[:8]}"
        spec = stripe_spec(key, credentials_secret=SECRET_BLOCK)
        sync_id = str(uuid.uuid4())

        # 1. Provision keeps failing (its body carries the credentials): the run fails, naming the step.
        emu.add_fault(
            route="POST /v1/admin/airbyte-sources/{source_id}/provision", kind="unavailable", count=50
        )
        monkeypatch.setenv("SPLENDOR_MAX_ATTEMPTS", "2")
        failed = await connect_source(
            spec=spec, sync_id=sync_id, credentials_block=CREDS_BLOCK, return_state=True
        )
        assert failed.is_failed()
        errors += [failed.message or "", repr(await failed.aresult(raise_on_failure=False))]
        emu.clear_faults()

        # 2. A dropped provision (committed, answer lost), then the resume finishes the pipeline.
        emu.add_fault(
            route="POST /v1/admin/airbyte-sources/{source_id}/provision", kind="drop_after", count=1
        )
        summary = await connect_source(spec=spec, sync_id=sync_id, credentials_block=CREDS_BLOCK)
        assert summary.status == "succeeded"

        # 3. A recurring sync whose ingestion fails: another failure text to audit.
        emu.add_fault(kind="ingest_fail", count=1, source_key=key)
        bad = await sync_source(source_key=key, credentials_block=CREDS_BLOCK, return_state=True)
        assert bad.is_failed()
        errors += [bad.message or "", repr(await bad.aresult(raise_on_failure=False))]
        # ... and its repair: a report, an artifact and events of its own to audit.
        repaired = await repair_ingest(source_key=key, credentials_block=CREDS_BLOCK)
        assert [r.verdict for r in repaired.runs] == ["repaired"]
        errors += [repaired.model_dump_json()]

        # 4. A bad credential shape is refused locally: the message names the field, not the value.
        await Secret(value={"api_key": credential, "account_id": "acct_audit"}).save(
            "audit-bad", overwrite=True
        )
        refused = await connect_source(
            spec=stripe_spec(f"{key}-bad", credentials_secret="audit-bad"),
            credentials_block=CREDS_BLOCK,
            return_state=True,
        )
        assert refused.is_failed() and "api_key" in (refused.message or "")
        errors += [refused.message or ""]

        mutation_log = json.dumps(emu.mutations())
        snapshot = json.dumps(emu.state())
    emulator_state = b"".join(p.read_bytes() for p in tmp_path.glob("emulator.sqlite*"))

    api = str(PREFECT_API_URL.value())
    await APILogHandler.aflush()
    events = await wait_for_events(api, {"splendor.sync.succeeded", "splendor.ingest.failed"})
    assert any(e["event"].startswith("splendor.") for e in events), "the audit must see pipeline events"
    async with get_client() as client:
        logs = await every_page(client.read_logs)
        artifacts = await every_page(client.read_artifacts)
    assert logs and artifacts

    outputs: dict[str, str | bytes] = {
        "captured logs": caplog.text,
        "stdout/stderr": "".join(capsys.readouterr()),
        "Prefect API logs": "\n".join(log.message for log in logs),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in artifacts]),
        "events": json.dumps(events),
        "exception texts": "\n".join(errors),
        "emulator mutation log": mutation_log,
        "emulator state snapshot": snapshot,
        "emulator state file": emulator_state,
        "Prefect database": b"".join(p.read_bytes() for p in database_files()),
        "checkpoints": b"".join(p.read_bytes() for p in prefect_harness.rglob("*") if p.is_file()),
    }
    assert len(outputs["Prefect database"]) > 100_000, "the database scan must read the real file"
    found = {where: hits(blob, canaries) for where, blob in outputs.items()}
    assert not any(found.values()), f"canary found in: { {k: v for k, v in found.items() if v} }"
    # The scans are real: the outputs hold the pipeline's own traces.
    assert key in outputs["Prefect API logs"] and key.encode() in outputs["checkpoints"]  # type: ignore[operator]


def test_emulator_banner_does_not_echo_configured_tokens(tmp_path: Path) -> None:
    from splendor_emulator.__main__ import build_parser, load_config, shown_tokens

    canary = f"canary-tok-{uuid.uuid4().hex}"
    config_file = tmp_path / "config.json"
    tokens = [t.model_dump() for t in _default_tokens()]
    tokens.append({"token": canary, "user_id": "canary", "roles": {"acme": "Admin"}})
    config_file.write_text(json.dumps({"tokens": tokens}))
    config = load_config(build_parser().parse_args(["--config", str(config_file)]))
    banner = shown_tokens(config)
    assert canary not in banner
    assert "acme-admin-token" in banner and "+1 from --config" in banner
