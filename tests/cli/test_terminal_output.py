"""What a long command prints, as an operator sees it: a live view that fits the screen on a terminal,
plain greppable lines through a pipe, Prefect's run log lines only with --verbose."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL

from bench.seed import bench_spec, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from tests.cli.terminal import run_on_pty
from tests.prefect_db import seed_home

CLI = str(Path(sys.executable).with_name("splendor-flows"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[@-~]")
# Prefect's console format for run logs: "12:00:00.000 | INFO    | Task run 'sync-1a2' - ..."
PREFECT_RUN_LINE = re.compile(r"\| (Flow|Task) run '")
SECRET = "terminal-output-credentials"


def cli_env(emulator: Emulator) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Whatever the machine running the tests says about terminals and colours.
        if key not in {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    }
    return env | {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "SPLENDOR_API_BASE": emulator.base_url,
        "SPLENDOR_TENANT_ID": "acme",
        "SPLENDOR_TOKEN": "acme-admin-token",
        "TERM": "xterm-256color",
        # No first-run telemetry notice from Prefect (printed once per PREFECT_HOME on a terminal).
        "DO_NOT_TRACK": "1",
    }


def through_pipe(emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env=cli_env(emulator) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def onboarded_file(tmp_path: Path, prefix: str, count: int) -> tuple[Path, list[str]]:
    """`count` sources connected straight through the API, and a connectors file listing them."""
    specs = [bench_spec(i, source_key=f"{prefix}-{i:03d}", credentials_secret=SECRET) for i in range(count)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    return write_file(tmp_path, [s.source_key for s in specs]), [s.source_key for s in specs]


def write_file(tmp_path: Path, keys: list[str]) -> Path:
    sources = [
        {
            "provider_key": "stripe",
            "source_key": key,
            "dataset_id": "payments",
            "streams": ["charges"],
            "credentials_secret": SECRET,
        }
        for key in keys
    ]
    defaults = {"bucket": "acme-connectors", "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor"}
    path = tmp_path / f"connectors-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "defaults": defaults, "sources": sources}))
    return path


async def save_secret() -> None:
    value = {"api_key": "sk_test_terminal-9d1e", "account_id": "acct_term1", "start_date": "2026-01-01"}
    await Secret(value=value).save(SECRET, overwrite=True)


async def test_fleet_of_50_on_a_terminal_shows_a_live_view_and_fits_the_screen(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    path, keys = await onboarded_file(tmp_path, source_key, 50)
    rows = 40

    result = run_on_pty([CLI, "fleet", str(path)], cli_env(emulator), rows=rows, cols=120)

    shown = result.screen.text()
    assert result.returncode == 0, "\n".join(shown)
    plain = ANSI.sub("", result.raw)
    # The live view was drawn: its header with the counts, and lines naming sources in flight.
    headers = re.findall(r"fleet  (\d+) done · (\d+) failed · (\d+) in flight · (\d+) waiting", plain)
    assert headers, plain[-3000:]
    assert any(int(in_flight) > 0 for _, _, in_flight, _ in headers), headers
    assert any(re.search(rf"  {re.escape(key)}  sync run \d+ started", plain) for key in keys)
    # It never grew past the screen, and it is gone: what stays is the summary, which fits too.
    assert result.screen.max_cursor_up < rows
    assert len(shown) < rows, "\n".join(shown)
    assert "50 of 50 source(s) succeeded." in shown
    assert any("more source(s) with nothing to report" in line for line in shown), "\n".join(shown)
    assert not any(PREFECT_RUN_LINE.search(line) for line in shown), "\n".join(shown)


async def test_apply_through_a_pipe_is_plain_and_greppable(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    await save_secret()
    keys = [f"{source_key}-{i}" for i in range(6)]
    path = write_file(tmp_path, keys)

    result = through_pipe(emulator, "apply", str(path))

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "\x1b" not in output
    lines = output.splitlines()
    # One line per finished source, then the summary: every source's row, with what became of it.
    for key in keys:
        assert lines.count(f"done {key}: onboarded") == 1, output
        assert any(
            re.search(rf"│ \+ create\s+│ {re.escape(key)} \(new\).*│ applied\s+│", line) for line in lines
        )
    assert not any(PREFECT_RUN_LINE.search(line) for line in lines), output
    assert "Applied 6, failed 0." in output
    # Before the summary: one line per source, nothing else.
    progress = lines[: next(i for i, line in enumerate(lines) if line.startswith("Plan for tenant"))]
    assert sorted(progress) == sorted(f"done {key}: onboarded" for key in keys), output


async def test_verbose_brings_prefects_run_log_lines_back(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    path, keys = await onboarded_file(tmp_path, source_key, 3)

    quiet = through_pipe(emulator, "fleet", str(path))
    verbose = through_pipe(emulator, "fleet", str(path), "--verbose")

    for result in (quiet, verbose):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 of 3 source(s) succeeded." in result.stdout
    assert not PREFECT_RUN_LINE.search(quiet.stdout + quiet.stderr)
    for key in keys:
        assert f"done {key}: run " in quiet.stdout
    said = verbose.stdout + verbose.stderr
    assert re.search(r"\| Flow run '[^']+' - Beginning flow run '[^']+' for flow 'sync-fleet'", said), said
    assert re.search(r"\| Flow run '[^']+' - Fleet of 3 source\(s\)", said), said


async def test_sync_prints_its_steps_in_plain_words(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    _, [key] = await onboarded_file(tmp_path, source_key, 1)

    plain = through_pipe(emulator, "sync", key)
    verbose = through_pipe(emulator, "sync", key, "--verbose")

    for result in (plain, verbose):
        assert result.returncode == 0, result.stdout + result.stderr
    said = plain.stdout + plain.stderr
    assert re.search(r"^sync: Started sync run (\d+) \(attempt 1\)$", said, re.MULTILINE), said
    assert re.search(r"^poll: Run \d+ is succeeded$", said, re.MULTILINE), said
    assert re.search(r"^ingest-ready: Ingestion of run \d+ is ready: \d+ documents$", said, re.MULTILINE), (
        said
    )
    # The engines' own lines stay in the run log.
    assert not PREFECT_RUN_LINE.search(said) and "Finished in state" not in said, said
    loud = verbose.stdout + verbose.stderr
    assert re.search(r"\| Task run 'sync-[^']+' - Started sync run \d+ \(attempt 1\)", loud), loud
    assert "Finished in state Completed()" in loud
    assert not re.search(r"^sync: ", loud, re.MULTILINE), loud


async def test_a_temporary_servers_output_stays_off_the_live_view(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """Without PREFECT_API_URL Prefect starts a server of its own, whose process writes to the
    terminal it inherited whenever it likes; on a terminal the CLI gives it a log file instead."""
    path, _ = await onboarded_file(tmp_path, source_key, 3)
    home = tmp_path / "prefect-home"
    seed_home(home)
    env = {key: value for key, value in cli_env(emulator).items() if key != "PREFECT_API_URL"}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        # Slow to start on a busy machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }

    result = run_on_pty([CLI, "fleet", str(path)], env, rows=40, cols=120)

    shown = "\n".join(result.screen.text())
    assert result.returncode == 0, shown
    assert "3 of 3 source(s) succeeded." in shown
    assert "Starting temporary server" not in shown and "prefect.io/docs" not in shown, shown
    log = ANSI.sub("", (home / "splendor" / "temporary-server.log").read_text())
    assert "Starting temporary server on http://127.0.0.1:" in log
