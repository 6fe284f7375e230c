"""A Prefect API that answers 503 for a while (a SQLite server with its database locked, a restart) is
ridden out by a pipeline run from the CLI; one that stays away longer than the bound ends it with one
line naming Prefect and what to do, no traceback. The 503s come from a real proxy in front of the test
session's Prefect server, answering exactly what Prefect answers when its database is locked."""

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.base import PrefectResponse
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from soak.invariants import clear_cause, failed_where
from soak.jobs import Report
from splendor_emulator import Emulator
from splendor_flows.orchestration.prefect_outage import RIDE_OUT_RETRIES, prefect_outage, ride_out_seconds
from tests.flows.conftest import mutating_counts
from tests.reliability.conftest import RemoteState
from tests.reliability.prefect_proxy import running_proxy

CLI = Path(sys.executable).with_name("splendor-flows")
# What Prefect's client waits in all, by default, before it hands a 503 back: 2 + 4 + 8 + 16 + 32 s.
PREFECT_DEFAULT_BUDGET = ride_out_seconds(5)


def write_spec(tmp_path: Path, source_key: str, secret: str) -> Path:
    spec = {
        "provider_key": "stripe",
        "source_key": source_key,
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "streams": ["charges", "customers"],
        "credentials_secret": secret,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(
    api_url: str, emulator: Emulator, *args: str, env: dict[str, str] | None = None, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        # The budget under test is the CLI's own unless a case sets it, as a user would.
        if key not in ("PREFECT_CLIENT_MAX_RETRIES", "PREFECT_CLIENT_RETRY_JITTER_FACTOR")
    }
    full = {
        **base,
        "PREFECT_API_URL": api_url,
        "SPLENDOR_API_BASE": emulator.base_url,
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": "acme-admin-token",
        "COLUMNS": "100",
        # No jitter: the waits are exactly 2, 4, 8, ... s, so the outage below outlasts Prefect's own
        # budget by a known margin.
        "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0",
        **(env or {}),
    }
    return subprocess.run(
        [str(CLI), *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


async def flow_runs_with(sync_id: str) -> int:
    async with get_client() as client:
        runs = await client.read_flow_runs(limit=200)
    return sum(1 for r in runs if r.parameters.get("sync_id") == sync_id)


@pytest.mark.slow
async def test_pipeline_rides_out_a_prefect_api_answering_503(
    emulator: Emulator, tmp_path: Path, source_key: str, stripe_secret: str
) -> None:
    spec = write_spec(tmp_path, source_key, stripe_secret)
    sync_id = str(uuid.uuid4())
    before = mutating_counts(emulator)
    # Longer than Prefect's default budget (a request given up after it), shorter than the CLI's.
    outage = PREFECT_DEFAULT_BUDGET + 8
    assert outage < ride_out_seconds(RIDE_OUT_RETRIES)

    with running_proxy(str(PREFECT_API_URL.value())) as proxy:
        # Creating the flow run is refused, as a server whose database another writer holds refuses it.
        proxy.outage.start(outage, only=("POST", "/api/flow_runs/"), from_first_request=True)
        result = run_cli(proxy.api_url, emulator, "connect", str(spec), "--sync-id", sync_id)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "error:" not in output, output
    refused = proxy.outage.refused
    # Refused as often and for as long as Prefect's default lets a request be (6 attempts over 62 s,
    # after which it hands the 503 back), and the run was created all the same.
    assert len(refused) >= 6, refused
    assert proxy.refused_span() >= PREFECT_DEFAULT_BUDGET, refused
    # The pipeline did its work once: one flow run, one source, one sync, one enqueue.
    assert await flow_runs_with(sync_id) == 1
    after = mutating_counts(emulator)
    assert {step: after[step] - before[step] for step in ("create", "sync", "enqueue")} == {
        "create": 1,
        "sync": 1,
        "enqueue": 1,
    }


async def test_outage_longer_than_the_bound_is_one_line_naming_prefect(
    emulator: Emulator, tmp_path: Path, source_key: str, stripe_secret: str
) -> None:
    spec = write_spec(tmp_path, source_key, stripe_secret)
    sync_id = str(uuid.uuid4())
    remote = RemoteState(emulator)

    with running_proxy(str(PREFECT_API_URL.value())) as proxy:
        proxy.outage.start(3600)
        # A user's own budget is kept (here one retry, 2 s), so the outage outlasts it.
        result = run_cli(
            proxy.api_url,
            emulator,
            "connect",
            str(spec),
            "--sync-id",
            sync_id,
            env={"PREFECT_CLIENT_MAX_RETRIES": "1"},
            timeout=120,
        )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines[0].startswith(f"error: Prefect API at {proxy.api_url} unavailable: it answered 503 "), output
    assert "still after 1 retry over about 2 s" in lines[0], output
    assert "once " in lines[0] and "/health answers, run again with the same sync_id" in lines[0], output
    assert lines[1:] == [f"resume with: splendor-flows connect {spec} --sync-id {sync_id}"], output
    assert len(proxy.outage.refused) == 2, proxy.outage.refused  # the request and its one retry
    remote.assert_unchanged()
    assert await flow_runs_with(sync_id) == 0


async def test_prefect_api_not_listening_is_one_line_naming_prefect(
    emulator: Emulator, tmp_path: Path, source_key: str, stripe_secret: str
) -> None:
    spec = write_spec(tmp_path, source_key, stripe_secret)
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}/api"
    remote = RemoteState(emulator)

    result = run_cli(api_url, emulator, "connect", str(spec), timeout=120)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines[0].startswith(f"error: Prefect API at {api_url} unavailable: "), output
    assert "got no answer (ConnectError" in lines[0] and "`prefect server start`" in lines[0], output
    assert len(lines) == 2 and lines[1].startswith("resume with: splendor-flows connect"), output
    remote.assert_unchanged()


def prefect_error(status: int) -> PrefectHTTPStatusError:
    """What Prefect's client raises for an answer it gave up on (built by Prefect's own response)."""
    request = httpx.Request("POST", f"{PREFECT_API_URL.value()}/flow_runs/")
    response = httpx.Response(status, request=request, json={"exception_message": "Service Unavailable"})
    with pytest.raises(PrefectHTTPStatusError) as raised:
        PrefectResponse.from_httpx_response(response).raise_for_status()
    return raised.value


def test_soak_takes_a_named_prefect_outage_as_a_clear_cause_and_the_raw_error_not() -> None:
    raw = prefect_error(503)
    outage = prefect_outage(raw)
    assert outage is not None
    base = {"pipeline": 1, "phase": "connect", "sync_id": "s", "resume": 0, "source_key": "k"}
    named = Report(event="failed", error_type=type(outage).__name__, error=str(outage), **base)
    bare = Report(event="failed", error_type=type(raw).__name__, error=str(raw), **base)
    assert clear_cause(named) and failed_where(named) == "prefect"
    assert not clear_cause(bare) and failed_where(bare) == "?"
    # A status Prefect's client does not retry says something waiting will not change: not an outage.
    assert prefect_outage(prefect_error(404)) is None
    assert prefect_outage(prefect_error(500)) is None
