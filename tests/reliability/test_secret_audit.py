"""Secret audit: run full pipelines (and failing ones) with a canary API token and canary connector
credentials, then search every output for them. Zero hits allowed. Four paths: connect, sync and repair
of one source; a fleet (sync-fleet) whose API errors quote the token and a connector credential; a
schedule tick (sync-scheduled) whose run error quotes the credential a source was provisioned from; an
OAuth consent with a canary secret_id. The notification webhook URL has its own audit in
tests/e2e/test_e2e_7_automations_apply.py (the splendor-notify block, the command's output and errors).

Outputs searched: captured logs (every logger, DEBUG), Prefect's API logs, the Prefect database file
(raw bytes, WAL included), checkpoint files in result storage, artifacts, events, exception texts and
state messages, flow-run parameters and run input, the emulator's mutation log, its state file and its
state snapshot, and the emulator CLI's start-up banner. Secret blocks are stored encrypted by the
Prefect server, so even the block document table holds no plain-text canary (checked as part of the raw
database scan).
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_API_URL

from bench.seed import connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import EmulatorConfig, UserTokenConfig, running_emulator
from splendor_emulator.config import _default_tokens
from splendor_flows.engine.polling import PollOptions
from splendor_flows.fleet.run import FleetFailed
from splendor_flows.fleet.source import SourceStatus
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.repair_ingest import repair_ingest
from splendor_flows.flows.sync_fleet import sync_fleet
from splendor_flows.flows.sync_scheduled import sync_scheduled
from splendor_flows.flows.sync_source import sync_source
from splendor_flows.orchestration import fingerprints
from splendor_flows.orchestration.splendor_clients import SplendorCredentials
from tests.flows.conftest import stripe_spec
from tests.flows.test_oauth import _now, approve, oauth_spec, resume_when_paused, wait_for_consent_link

T = TypeVar("T")

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


async def audit_setup(caplog: pytest.LogCaptureFixture) -> None:
    """Every log at DEBUG, and Prefect's event and log workers on this harness's API."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # Prefect's event and log workers are process-wide and keep the API they were started with; in a
    # full test run that is another suite's test server. Restart them on this harness's API.
    await EventsWorker.drain_all(at_exit=False)
    await APILogWorker.drain_all(at_exit=False)
    caplog.set_level(logging.DEBUG)
    for name in ("splendor_api", "httpx", "httpcore", "prefect", "uvicorn", "splendor_emulator"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def emulator_with(token: str, tmp_path: Path) -> EmulatorConfig:
    """An emulator that knows the canary token as a tenant admin's."""
    return EmulatorConfig(
        tokens=[
            *_default_tokens(),
            UserTokenConfig(token=token, user_id="canary", roles={"acme": "Admin"}),
        ],
        sync_seconds=0.4,
        ingest_seconds=0.05,
        bucket_root=tmp_path / "buckets",
    )


async def save_blocks(api_base: str, token: str, credential: str) -> None:
    """The Splendor credentials block with the canary token, the connector Secret with the canary."""
    from prefect.blocks.system import Secret

    await SplendorCredentials(api_base=api_base, tenant_id="acme", token=token).save(
        CREDS_BLOCK, overwrite=True
    )
    await Secret(
        value={"api_key": f"sk_test_{credential}", "account_id": "acct_audit", "start_date": "2026-01-01"}
    ).save(SECRET_BLOCK, overwrite=True)


async def prefect_outputs(
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    wanted_events: set[str],
) -> dict[str, str | bytes]:
    """What the Prefect side kept: logs (captured and the API's), artifacts, events, checkpoints and
    results in result storage, and the raw database."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    api = str(PREFECT_API_URL.value())
    await APILogHandler.aflush()
    events = await wait_for_events(api, wanted_events)
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
        "Prefect database": b"".join(p.read_bytes() for p in database_files()),
    }
    # Checkpoints, start records and flow results, one entry per file: a hit names the file.
    outputs |= {
        f"result storage {p.relative_to(prefect_harness)}": p.read_bytes()
        for p in prefect_harness.rglob("*")
        if p.is_file()
    }
    assert len(outputs["Prefect database"]) > 100_000, "the database scan must read the real file"
    return outputs


async def run_records(flow_run_ids: list[UUID]) -> dict[str, str]:
    """The parameters, state message and run input (every key) of these flow runs, as the API has them."""
    from prefect.client.orchestration import get_client

    found: dict[str, str] = {}
    async with get_client() as client:
        for run_id in flow_run_ids:
            run = await client.read_flow_run(run_id)
            inputs = await client.filter_flow_run_input(run_id, key_prefix="", limit=1000, exclude_keys=set())
            found[f"flow run {run_id}"] = json.dumps(
                {
                    "parameters": run.parameters,
                    "state": run.state.model_dump(mode="json") if run.state else None,
                    "run input": [i.model_dump(mode="json") for i in inputs],
                }
            )
    return found


def assert_no_canary(outputs: dict[str, str | bytes], canaries: list[str]) -> None:
    found = {where: hits(blob, canaries) for where, blob in outputs.items()}
    assert not any(found.values()), f"canary found in: { {k: v for k, v in found.items() if v} }"


async def test_no_secret_reaches_any_output(
    tmp_path: Path,
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret

    await audit_setup(caplog)
    token = f"canary-tok-{uuid.uuid4().hex}"
    credential = f"canary-cred-{uuid.uuid4().hex}"
    canaries = [token, credential]
    config = emulator_with(token, tmp_path)
    state_file = tmp_path / "emulator.sqlite"
    errors: list[str] = []
    with running_emulator(config, state_path=state_file, log_level="debug") as emu:
        await save_blocks(emu.base_url, token, credential)
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

    outputs = await prefect_outputs(
        prefect_harness, caplog, capsys, {"splendor.sync.succeeded", "splendor.ingest.failed"}
    )
    outputs |= {
        "exception texts": "\n".join(errors),
        "emulator mutation log": mutation_log,
        "emulator state snapshot": snapshot,
        "emulator state file": emulator_state,
    }
    assert_no_canary(outputs, canaries)
    # The scans are real: the outputs hold the pipeline's own traces.
    stored = b"".join(blob for where, blob in outputs.items() if where.startswith("result storage "))  # type: ignore[misc]
    assert key in outputs["Prefect API logs"] and key.encode() in stored


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


async def test_no_secret_leaves_a_fleet(
    tmp_path: Path,
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fleet whose API errors quote the canary token and connector credential: a Splendor run that
    fails with them in its error message (an upstream quoting the request it was given), and sync starts
    answered by a gateway error page that quotes the whole request. Its summary, table artifact, events,
    logs and result must not, nor the checkpoints the fleet and then sync-source (the same run failure)
    leave in result storage. The fleet never loads the credential to sync: it learns it from the Secret
    block its connectors file names, only to mask it."""
    await audit_setup(caplog)
    token = f"canary-tok-{uuid.uuid4().hex}"
    credential = f"canary-cred-{uuid.uuid4().hex}"
    canaries = [token, credential]
    monkeypatch.setenv("SPLENDOR_RUN_HISTORY", str(tmp_path / "run-history.json"))
    monkeypatch.setenv("SPLENDOR_MAX_ATTEMPTS", "2")
    keys = [f"audit-fleet-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    failing = keys[0]
    upstream_error = (
        f"Stripe refused the request: invalid header Authorization: Bearer {token}, "
        f"api_key sk_test_{credential}"
    )
    with running_emulator(emulator_with(token, tmp_path), log_level="debug") as emu:
        await save_blocks(emu.base_url, token, credential)
        specs = [stripe_spec(key, credentials_secret=SECRET_BLOCK) for key in keys]
        # Connected straight through the client, as the fleet's worker finds them: a connect-source run
        # in this process would leave its secrets in this context's masking, which the fleet's own
        # process would not have.
        async with SplendorClient(
            SplendorConfig(api_base=emu.base_url, tenant_id="acme", token=token)
        ) as client:
            await onboard(client, specs, {"api_key": f"sk_test_{credential}", "account_id": "acct_audit"})
        connectors = tmp_path / "connectors.yaml"
        connectors.write_text(connectors_yaml(specs))

        emu.add_fault(kind="run_fail", source_key=failing, count=5, error_message=upstream_error)
        emu.add_fault(
            route="POST /v1/admin/airbyte-sources/{source_id}/sync",
            kind="bad_gateway",
            count=2,
            echo_request=True,
        )
        state = await sync_fleet(
            connectors_file=str(connectors),
            credentials_block=CREDS_BLOCK,
            trigger="manual",
            max_sync_attempts=1,
            poll=PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=60),
            concurrency_limit=None,
            return_state=True,
        )
        failure = await state.aresult(raise_on_failure=False)
        # The same failure through sync-source's step tasks, whose results Prefect persists.
        single = await sync_source(
            source_key=failing, credentials_block=CREDS_BLOCK, max_sync_attempts=1, return_state=True
        )
        mutation_log = json.dumps(emu.mutations())
    # One source failed, so the run fails; its exception carries the summary the run would return.
    assert state.is_failed() and isinstance(failure, FleetFailed), failure
    summary = failure.summary
    assert single.is_failed() and "Stripe refused the request" in (single.message or "")
    [failed] = [o for o in summary.outcomes if o.status == SourceStatus.FAILED]
    assert failed.source_key == failing and summary.succeeded == 2
    # The gateway's error pages were answered: the fleet had API errors quoting the token to handle.
    assert sum(m["status"] == 502 for m in json.loads(mutation_log)) == 2

    outputs = await prefect_outputs(prefect_harness, caplog, capsys, {"splendor.sync.failed"})
    runs = [state.state_details.flow_run_id, single.state_details.flow_run_id]
    outputs |= await run_records([r for r in runs if r is not None])
    outputs |= {
        "fleet summary (the flow's result)": summary.model_dump_json(),
        "exception texts": f"{state.message}\n{failure}\n{failure!r}\n{single.message}",
        "run history": (tmp_path / "run-history.json").read_bytes(),
        "emulator mutation log": mutation_log,
    }
    found = {where: hits(blob, canaries) for where, blob in outputs.items()}
    # One line per place, the artifacts first: what a fix of the fleet's failure texts is checked against.
    assert not found["artifacts"], "a canary is in the fleet's artifacts"
    assert not any(found.values()), f"canary found in: { {k: v for k, v in found.items() if v} }"
    # The scans are real: the failing source's error reached the artifacts, masked.
    assert "Stripe refused the request" in str(outputs["artifacts"])
    assert "api_key ***" in str(outputs["artifacts"])


@pytest.mark.parametrize("entry", ["sync-scheduled", "sync-source"])
async def test_no_connector_credential_leaves_a_run_of_a_connected_source(
    entry: str,
    tmp_path: Path,
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A schedule tick or a sync-source run has no connectors file nor spec: the Secret block a source's
    credentials came from is the one its provision recorded (the fingerprint connect-source and
    `splendor-flows apply` save). A run error quoting that credential must not reach the run's
    artifacts, events, logs or state message."""
    await audit_setup(caplog)
    token = f"canary-tok-{uuid.uuid4().hex}"
    credential = f"canary-cred-{uuid.uuid4().hex}"
    monkeypatch.setenv("SPLENDOR_RUN_HISTORY", str(tmp_path / "run-history.json"))
    key = f"audit-tick-{uuid.uuid4().hex[:8]}"
    secret = {"api_key": f"sk_test_{credential}", "account_id": "acct_audit"}
    with running_emulator(emulator_with(token, tmp_path), log_level="debug") as emu:
        await save_blocks(emu.base_url, token, credential)
        spec = stripe_spec(key, credentials_secret=SECRET_BLOCK)
        # Connected straight through the client (this context learns nothing), its provision recorded
        # as connect-source records it.
        async with SplendorClient(
            SplendorConfig(api_base=emu.base_url, tenant_id="acme", token=token)
        ) as client:
            await onboard(client, [spec], secret)
        await fingerprints.save("acme", key, fingerprints.new_fingerprint(secret, SECRET_BLOCK))
        refusal = f"Invalid API Key provided: sk_test_{credential}"
        emu.add_fault(kind="run_fail", source_key=key, count=5, error_message=refusal)
        poll = PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=60)
        if entry == "sync-scheduled":
            state = await sync_scheduled(
                source_keys=[key],
                credentials_block=CREDS_BLOCK,
                max_sync_attempts=1,
                poll=poll,
                concurrency_limit=None,
                return_state=True,
            )
        else:
            state = await sync_source(
                source_key=key,
                credentials_block=CREDS_BLOCK,
                max_sync_attempts=1,
                poll=poll,
                return_state=True,
            )
        failure = await state.aresult(raise_on_failure=False)
    assert state.is_failed(), failure
    if entry == "sync-scheduled":
        assert isinstance(failure, FleetFailed), failure
        [failed] = failure.summary.outcomes
        assert failed.status == SourceStatus.FAILED

    outputs = await prefect_outputs(prefect_harness, caplog, capsys, {"splendor.sync.failed"})
    if state.state_details.flow_run_id is not None:
        outputs |= await run_records([state.state_details.flow_run_id])
    outputs |= {"exception texts": f"{state.message}\n{failure}\n{failure!r}"}
    found = {where: hits(blob, [credential]) for where, blob in outputs.items()}
    assert not any(found.values()), f"canary found in: { {k: v for k, v in found.items() if v} }"
    # The scans are real: the run's error reached them, masked (a tick's table artifact lists each
    # source's error; a sync-source run's error is its failure, in its own state).
    reached = outputs["artifacts"] if entry == "sync-scheduled" else outputs["exception texts"]
    assert "Invalid API Key provided: ***" in str(reached)


async def browsing(action: Awaitable[T]) -> T:
    """What the admin's browser does (the consent redirect carries the secret_id in its URL), with
    httpx's request logs off: they are the browser's, not the pipeline's."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        return await action
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def test_no_oauth_secret_id_reaches_any_output(
    tmp_path: Path,
    prefect_harness: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An OAuth consent answered with the canary secret_id Splendor issued, whose completion is first shed
    with an error page quoting the request (the secret_id in its body); and a second source answered
    with a made-up canary secret_id, which Splendor refuses. Neither secret_id may be in logs,
    artifacts, events, parameters, results, state messages or the runs' input once they are done."""
    await audit_setup(caplog)
    token = f"canary-tok-{uuid.uuid4().hex}"
    refused_secret = f"sec_canary_{uuid.uuid4().hex}"
    runs: list[UUID] = []
    with running_emulator(emulator_with(token, tmp_path), log_level="debug") as emu:
        await save_blocks(emu.base_url, token, f"canary-cred-{uuid.uuid4().hex}")

        async def consent(source_key: str, answer: str | None) -> tuple[Any, str]:
            """Run connect-source for an OAuth source, approve, answer the resume form; the final state
            and the secret_id Splendor issued."""
            started = await _now()
            spec = oauth_spec(source_key, "salesforce")
            pipeline = asyncio.create_task(
                connect_source(spec=spec, credentials_block=CREDS_BLOCK, sync=False, return_state=True)
            )
            consent_url, flow_run_id = await wait_for_consent_link(started)
            runs.append(flow_run_id)
            issued = await browsing(approve(consent_url))
            await resume_when_paused(flow_run_id, {"secret_id": answer or issued})
            return await asyncio.wait_for(pipeline, timeout=120), issued

        emu.add_fault(
            route="POST /v1/admin/airbyte-sources/{source_id}/oauth/complete",
            kind="unavailable",
            count=1,
            echo_request=True,
        )
        done, secret_id = await consent(f"audit-oauth-{uuid.uuid4().hex[:8]}", None)
        assert done.is_completed(), done
        refused, _ = await consent(f"audit-oauth-{uuid.uuid4().hex[:8]}-x", refused_secret)
        assert refused.is_failed() and "did not accept the secret_id" in (refused.message or "")
        mutation_log = json.dumps(emu.mutations())
    # The completion met the error page quoting the secret_id, and was sent again after the pause.
    completions = [m["status"] for m in json.loads(mutation_log) if m["route"].endswith("/oauth/complete")]
    assert completions == [503, 200, 422]

    outputs = await prefect_outputs(prefect_harness, caplog, capsys, {"splendor.credentials.ready"})
    # The resume form's answer is stored by the Prefect server until the run deletes it, and a deleted
    # row's bytes can stay in the database file's free pages: for the secret_ids, the runs' input is
    # read through the API instead (after the runs, as anyone could read it).
    database = outputs.pop("Prefect database")
    assert not hits(database, [token])
    outputs |= await run_records(runs)
    outputs |= {
        "state messages": "\n".join(str(s.message) for s in (done, refused)),
        "results": repr(await done.aresult()) + repr(await refused.aresult(raise_on_failure=False)),
        "emulator mutation log": mutation_log,
    }
    assert_no_canary(outputs, [token, secret_id, refused_secret])
    # The scans are real: the runs and their input were read.
    assert all(f"flow run {r}" in outputs for r in runs) and len(runs) == 2
