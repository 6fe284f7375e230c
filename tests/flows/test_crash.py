"""SIGKILL the process running a pipeline while its sync is in flight; a new run attaches."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from splendor_emulator import EmulatorConfig, running_emulator
from splendor_flows.flows.connect_source import connect_source
from tests.flows.conftest import stripe_spec

REPO = Path(__file__).resolve().parents[2]


async def test_sigkill_mid_poll_then_resume_attaches(
    tmp_path: Path, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough to be surely in flight when the kill lands (the first refresh follows the start at once):
    # with 4 s, a CI machine loaded by the parallel suite once sampled the run already succeeded.
    config = EmulatorConfig(sync_seconds=12.0, ingest_seconds=0.05, bucket_root=tmp_path / "buckets")
    with running_emulator(config) as emu:
        monkeypatch.setenv("SPLENDOR_API_BASE", emu.base_url)
        sync_id = str(uuid.uuid4())
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flows.crash_runner", source_key, sync_id],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            runs: list[dict[str, object]] = []
            while time.monotonic() < deadline:
                sources = [s for s in emu.sources("acme") if s["source_key"] == source_key]
                runs = emu.runs("acme", source_id=sources[0]["source_id"]) if sources else []
                refreshes = emu.counts().get("POST /v1/admin/airbyte-runs/{run_id}/refresh", 0)
                if runs and refreshes >= 1:
                    break
                await asyncio.sleep(0.1)
            assert runs, "the pipeline never started a sync"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert runs[0]["status"] in ("pending", "running")
        summary = await connect_source(spec=stripe_spec(source_key), sync_id=sync_id)
        assert summary.run_id == runs[0]["run_id"]
        all_runs = emu.runs("acme", source_id=summary.source_id)
        assert len(all_runs) == 1 and all_runs[0]["status"] == "succeeded"
        assert emu.counts().get("POST /v1/admin/airbyte-sources/{source_id}/sync", 0) == 1
