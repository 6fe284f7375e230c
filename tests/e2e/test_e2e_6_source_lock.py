"""A holder of a source's slot that dies releases it within the documented bound, on a real
`prefect server start` (whose repossessor service takes back expired leases; the test harness's server
runs no such service)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.source_lock import RELEASE_BOUND_SECONDS, SourceBusy, hold_source
from tests.prefect_db import seed_home

from .conftest import REPO, Stack


async def _hold_briefly(scope: Scope, wait_seconds: float) -> float:
    async with hold_source(scope, wait_seconds=wait_seconds) as waited:
        return waited


def test_a_killed_holder_releases_the_source_within_the_bound(stack: Stack) -> None:
    source_key = f"held-{uuid.uuid4().hex[:6]}"
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.lock_holder", stack.emulator.base_url, source_key],
        stdout=subprocess.PIPE,
        text=True,
        env=stack.env,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        scope = Scope(api_base=stack.emulator.base_url, tenant="acme", source_key=source_key, sync_id="next")
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            # While the holder lives, nobody else gets the source, even after a lease's length: it renews.
            began = time.monotonic()
            try:
                asyncio.run(_hold_briefly(scope, wait_seconds=RELEASE_BOUND_SECONDS + 5))
                raise AssertionError("the source was held twice")
            except SourceBusy:
                pass
            assert time.monotonic() - began >= RELEASE_BOUND_SECONDS
            holder.kill()
            holder.wait(timeout=10)
            killed = time.monotonic()
            waited = asyncio.run(_hold_briefly(scope, wait_seconds=RELEASE_BOUND_SECONDS + 60))
            took = time.monotonic() - killed
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, 9)
    print(
        f"\nsource released {took:.1f} s after its holder was SIGKILLed (bound {RELEASE_BOUND_SECONDS:.0f} s)"
    )
    assert waited > 0 and took <= RELEASE_BOUND_SECONDS + 5, took


def test_a_killed_holder_on_an_ephemeral_server_is_taken_back_by_the_next_run(
    stack: Stack, tmp_path: Path
) -> None:
    """No PREFECT_API_URL (a CLI run, the demo): the server is ephemeral and has no repossessor, so the next
    run takes the slot of a holder that died without releasing it back itself, after the same bound."""
    source_key = f"ephemeral-{uuid.uuid4().hex[:6]}"
    home = tmp_path / "home"
    seed_home(home)
    env = {k: v for k, v in stack.env.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    command = [sys.executable, "-m", "tests.lock_holder", stack.emulator.base_url, source_key]
    # A session of its own, killed whole: the CLI and the ephemeral server it started die together, as
    # they do when a terminal or container stops. Killing the CLI alone would leave its server running,
    # orphaned, after the suite.
    holder = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    waiter = subprocess.run(
        [*command, "--wait", str(RELEASE_BOUND_SECONDS + 60)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert waiter.returncode == 0, waiter.stderr[-2000:]
    waited = float(waiter.stdout.split()[-1])
    print(f"\nephemeral server: the next run took the dead holder's slot back after {waited:.1f} s")
    # The wait includes starting the ephemeral server (its first call), seconds on a loaded machine.
    assert RELEASE_BOUND_SECONDS <= waited <= RELEASE_BOUND_SECONDS + 25, waited
    assert "taking it back" in waiter.stderr
