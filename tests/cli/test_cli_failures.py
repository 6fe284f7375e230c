"""An expected failure, as a user sees it: one clear error line and a non-zero exit, no traceback on
the terminal; the traceback stays in the Prefect run log."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL

from splendor_emulator import Emulator

CLI = Path(sys.executable).with_name("splendor-flows")


def write_spec(tmp_path: Path, **overrides: str) -> Path:
    spec = {
        "provider_key": "stripe",
        "source_key": f"cli-{uuid.uuid4().hex[:8]}",
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "credentials_secret": "cli-test-credentials",
        **overrides,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(
    emulator: Emulator, token: str, *args: str, columns: int = 100
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # The session's Prefect server rather than a temporary one per command (same code path).
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "SPLENDOR_API_BASE": emulator.base_url,
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": token,
        "COLUMNS": str(columns),
    }
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


async def run_log(sync_id: str) -> str:
    """Every log line of the connect-source run that used this sync_id, as stored by the server."""
    async with get_client() as client:
        runs = [r for r in await client.read_flow_runs(limit=200) if r.parameters.get("sync_id") == sync_id]
        assert len(runs) == 1, f"expected one flow run with sync_id {sync_id}, found {len(runs)}"
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
    return "\n".join(log.message for log in logs)


@pytest.mark.parametrize(
    ("token", "overrides", "says"),
    [
        # Fails in the flow body (preflight), before any task.
        ("acme-member-token", {}, "the token is not an admin of tenant acme"),
        # Fails inside a task (discover), which Prefect reports once per run level.
        ("acme-admin-token", {"provider_key": "no-such-provider"}, "unknown provider_key 'no-such-provider'"),
    ],
    ids=["member-token", "failing-step"],
)
async def test_expected_failure_is_one_line_without_traceback(
    emulator: Emulator, tmp_path: Path, token: str, overrides: dict[str, str], says: str
) -> None:
    spec = write_spec(tmp_path, **overrides)
    sync_id = str(uuid.uuid4())

    result = run_cli(emulator, token, "connect", str(spec), "--sync-id", sync_id)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    error_lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and says in error_lines[0], output
    # The failure is stated once: Prefect's own copies of it stay off the terminal.
    assert sum(says in line for line in output.splitlines()) == 1, output
    assert f"resume with: splendor-flows connect {spec} --sync-id {sync_id}" in output
    assert len(output.strip().splitlines()) <= 6, output
    # The run log on the Prefect server still has the whole story.
    stored = await run_log(sync_id)
    assert "Traceback" in stored and says in stored
