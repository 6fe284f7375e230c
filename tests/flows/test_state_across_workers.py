"""State across workers (design §3): a resume is correct on a worker that shares nothing local with the
one that failed, against an API other than the one the checkpoints came from, and after the spec was
edited; a bad source_key is refused before any call.

Workers are subprocesses (`tests.flows.worker_runner`), each with its own PREFECT_HOME and result
storage, all talking to the session's Prefect test server: what one leaves in its result files the
other never sees, so only the Prefect API and Splendor can steer the resume.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.blocks.system import Secret

from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from splendor_emulator.store import CredentialRec
from splendor_flows.engine.polling import PollOptions
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.sync_source import sync_source
from splendor_flows.orchestration.run_records import variable_name
from splendor_flows.orchestration.scope import Scope
from tests.flows.conftest import MUTATING, mutating_counts, stripe_spec

REPO = Path(__file__).resolve().parents[2]
FAST_POLL = PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=10)
# A 503 that asks for no pause (the HTTP layer resends it at once) on every call: longer than any retry
# budget, so the step fails in well under a second.
STORM = {"kind": "unavailable", "count": None, "retry_after": "0"}


def emulator_config(root: Path) -> EmulatorConfig:
    return EmulatorConfig(sync_seconds=0.6, ingest_seconds=0.05, bucket_root=root)


def message_of(state: Any) -> str:
    return str(state.message or "")


# --- (a) a resume on another worker --------------------------------------------------------------------


@dataclass
class Worker:
    """A worker machine: its own Prefect home and result storage (unless given a shared one), the shared
    Prefect API."""

    home: Path
    results: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls, base: Path, name: str, *, results: Path | None = None, env: dict[str, str] | None = None
    ) -> "Worker":
        home = base / name / "prefect-home"
        home.mkdir(parents=True)
        if results is None:
            results = base / name / "results"
        results.mkdir(exist_ok=True)
        return cls(home, results, env or {})

    def checkpoints(self) -> list[Path]:
        return [p for p in self.results.rglob("*") if p.is_file()]

    def run(self, flow: str, source_key: str, sync_id: str, api_base: str) -> dict[str, Any]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(self.home),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.results),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "SPLENDOR_API_BASE": api_base,
            **self.env,
        }
        job = json.dumps({"flow": flow, "source_key": source_key, "sync_id": sync_id})
        done = subprocess.run(
            [sys.executable, "-m", "tests.flows.worker_runner", job],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert done.returncode == 0 and lines, f"worker exited {done.returncode}:\n{done.stderr[-4000:]}"
        outcome: dict[str, Any] = json.loads(lines[-1])
        return outcome


async def test_resume_on_another_worker_attaches_to_the_first_run(
    tmp_path: Path, source_key: str, stripe_secret: str
) -> None:
    began = time.monotonic()
    with running_emulator(emulator_config(tmp_path / "buckets")) as emu:
        sync_id = str(uuid.uuid4())
        one, two = Worker.make(tmp_path, "one"), Worker.make(tmp_path, "two")

        # Worker one onboards and syncs the source, then every enqueue-ingest fails: the run succeeded,
        # its data was never handed on. (An own emulator: the fault's route is this source's only.)
        emu.add_fault(route=MUTATING["enqueue"], **STORM)
        first = await asyncio.to_thread(one.run, "connect", source_key, sync_id, emu.base_url)
        assert first["state"] == "FAILED", first
        assert f"[ingest] source '{source_key}'" in first["message"], first["message"]
        [source] = [s for s in emu.sources("acme") if s["source_key"] == source_key]
        [run] = emu.runs("acme", source_id=source["source_id"])
        assert run["status"] == "succeeded"
        assert not [i for i in emu.ingest_runs("acme") if i["connector_run_id"] == run["run_id"]]
        # The checkpoints naming that run exist on worker one only.
        assert one.checkpoints() and not two.checkpoints()

        emu.clear_faults()
        second = await asyncio.to_thread(two.run, "connect", source_key, sync_id, emu.base_url)
        assert second["state"] == "COMPLETED", second
        summary = second["summary"]

        # No second sync: one run, one start-sync call, and that run is the one handed to ingestion.
        assert [r["run_id"] for r in emu.runs("acme", source_id=source["source_id"])] == [run["run_id"]]
        assert emu.count(MUTATING["sync"]) == 1
        assert summary["run_id"] == run["run_id"] and summary["ingest_status"] == "ready"
        ingests = [i for i in emu.ingest_runs("acme") if i["connector_run_id"] == run["run_id"]]
        assert ingests and sorted(i["ingest_run_id"] for i in ingests) == sorted(summary["ingest_run_ids"])
        assert all(i["status"] == "ready" for i in ingests)
        # Worker two ran its steps itself (nothing to read on its disk), yet created nothing new.
        assert len(emu.sources("acme")) == 1 and emu.count(MUTATING["create"]) == 1
    print(f"\nresume on another worker: {time.monotonic() - began:.1f} s wall (two worker processes)")


async def test_without_the_list_runs_route_a_lost_start_attaches_or_stops(
    tmp_path: Path, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an API that cannot list runs: a start whose answer is lost is asked again and the 409
    attaches; when every answer is lost, the next try (a task retry, as a resume on another worker
    would) finds the unanswered start in the records and stops naming it, starting nothing."""
    config = emulator_config(tmp_path / "buckets").model_copy(update={"list_runs_route": False})
    with running_emulator(config) as emu:
        monkeypatch.setenv("SPLENDOR_API_BASE", emu.base_url)
        await connect_source(spec=stripe_spec(source_key), sync=False)
        [source] = emu.sources("acme")

        emu.add_fault(route=MUTATING["sync"], kind="drop_after", count=1)
        summary = await sync_source(source_key=source_key, poll=FAST_POLL)
        [run] = emu.runs("acme", source_id=source["source_id"])
        assert summary.run_id == run["run_id"] and summary.status == "succeeded"
        assert emu.count(MUTATING["sync"]) == 2  # the lost one, then the re-ask that got the 409

        emu.add_fault(route=MUTATING["sync"], kind="drop_after", count=None)
        state = await sync_source(source_key=source_key, poll=FAST_POLL, return_state=True)
        assert state.is_failed()
        message = message_of(state)
        assert f"[sync] source '{source_key}'" in message and "cannot list the source's runs" in message
        assert "nothing new was started" in message, message
        # One run for the unanswered starts, none for the try that found their record.
        assert len(emu.runs("acme", source_id=source["source_id"])) == 2
        assert emu.count(MUTATING["sync"]) == 2 + 3


async def test_records_beside_shared_checkpoints_stop_another_worker_from_starting_again(
    tmp_path: Path, source_key: str, stripe_secret: str
) -> None:
    """SPLENDOR_RUN_RECORDS=result-storage: the start records live in the result storage the workers
    share, not in Prefect Variables, and still steer a resume elsewhere. Worker one's start is sent but
    every answer is lost, on an API that cannot list runs, so no checkpoint names the run; worker two
    (its own home, the shared results) finds the unanswered start in the records and starts nothing."""
    config = emulator_config(tmp_path / "buckets").model_copy(update={"list_runs_route": False})
    shared = {"SPLENDOR_RUN_RECORDS": "result-storage"}
    with running_emulator(config) as emu:
        results = tmp_path / "shared-results"
        one = Worker.make(tmp_path, "one", results=results, env=shared)
        two = Worker.make(tmp_path, "two", results=results, env=shared)
        sync_id = str(uuid.uuid4())
        emu.add_fault(route=MUTATING["sync"], kind="drop_after", count=None)
        first = await asyncio.to_thread(one.run, "connect", source_key, sync_id, emu.base_url)
        assert first["state"] == "FAILED", first
        [source] = [s for s in emu.sources("acme") if s["source_key"] == source_key]
        assert len(emu.runs("acme", source_id=source["source_id"])) == 1
        starts = emu.count(MUTATING["sync"])

        emu.clear_faults()
        second = await asyncio.to_thread(two.run, "sync", source_key, sync_id, emu.base_url)
        assert second["state"] == "FAILED", second
        assert "cannot list the source's runs" in second["message"], second["message"]
        assert "nothing new was started" in second["message"]
        assert "from the result storage" in second["message"]  # the hint names where the record is
        assert (
            emu.count(MUTATING["sync"]) == starts
            and len(emu.runs("acme", source_id=source["source_id"])) == 1
        )
        # The record is a file of the shared results, and no Prefect Variable was written for it.
        assert list(results.rglob("splendor-run-records/*"))
        scope = Scope(api_base=emu.base_url, tenant="acme", source_key=source_key, sync_id=sync_id)
        async with get_client() as client:
            assert await client.read_variable_by_name(variable_name(scope)) is None


# --- (b) a resume against another API with the same tenant -----------------------------------------------


def _records_of(emu: Emulator, source_ids: set[int]) -> dict[str, Any]:
    state = emu.state("acme")["acme"]
    return {
        "sources": sorted(
            (s for s in state["sources"] if s["source_id"] in source_ids), key=lambda s: s["source_id"]
        ),
        "runs": sorted(r["run_id"] for r in state["runs"] if r["source_id"] in source_ids),
    }


async def test_resume_against_another_api_leaves_its_sources_alone(
    tmp_path: Path, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = time.monotonic()
    sync_id = str(uuid.uuid4())
    with (
        running_emulator(emulator_config(tmp_path / "one")) as one,
        running_emulator(emulator_config(tmp_path / "two")) as two,
    ):
        # Emulator two (tenant acme too) already has two onboarded sources of its own: ids 1 and 2.
        monkeypatch.setenv("SPLENDOR_API_BASE", two.base_url)
        for other in ("other-a", "other-b"):
            await connect_source(spec=stripe_spec(f"{source_key}-{other}"), sync=False)
        theirs = {s["source_id"] for s in two.sources("acme")}

        # The pipeline fails at provision against emulator one, after its create step was checkpointed.
        monkeypatch.setenv("SPLENDOR_API_BASE", one.base_url)
        one.add_fault(route=MUTATING["provision"], **STORM)
        spec = stripe_spec(source_key)
        state = await connect_source(spec=spec, sync_id=sync_id, poll=FAST_POLL, return_state=True)
        assert state.is_failed() and "[provision]" in message_of(state), message_of(state)
        [created] = one.sources("acme")
        assert created["source_id"] in theirs, "the checkpoint's id must name a source on emulator two too"

        # Resumed with the same sync_id against emulator two.
        before = _records_of(two, theirs)
        two.reset_counters()
        monkeypatch.setenv("SPLENDOR_API_BASE", two.base_url)
        summary = await connect_source(spec=spec, sync_id=sync_id, poll=FAST_POLL)

        # Not one call that names another source; their records and runs are as they were ...
        mine = [s for s in two.sources("acme") if s["source_key"] == source_key]
        touched = {
            int(m["path_params"]["source_id"]) for m in two.mutations() if "source_id" in m["path_params"]
        }
        acted_on_theirs = touched & theirs
        assert not acted_on_theirs, (
            f"the resume called Splendor on sources {acted_on_theirs}: {two.mutations()}"
        )
        assert _records_of(two, theirs) == before
        # ... and its own source there, onboarded end to end.
        assert len(mine) == 1 and touched == {mine[0]["source_id"]}
        assert summary.source_id == mine[0]["source_id"]
        assert summary.status == "succeeded" and summary.ingest_status == "ready"
        assert two.count(MUTATING["create"]) == 1
    print(f"\nresume against another API: {time.monotonic() - began:.1f} s wall")


# --- (c) a spec edited between failure and resume --------------------------------------------------------


async def _fail_at(emulator: Emulator, step: str, spec: Any, sync_id: str) -> None:
    emulator.add_fault(route=MUTATING[step], **STORM)
    state = await connect_source(spec=spec, sync_id=sync_id, poll=FAST_POLL, return_state=True)
    emulator.clear_faults()
    assert state.is_failed() and f"[{step}]" in message_of(state), message_of(state)


async def test_edited_streams_stop_the_resume_naming_streams(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    sync_id = str(uuid.uuid4())
    # Failed at the sync: the connection (charges, customers) exists.
    await _fail_at(emulator, "sync", stripe_spec(source_key), sync_id)
    before = mutating_counts(emulator)

    edited = stripe_spec(source_key, streams=["charges", "invoices"])
    state = await connect_source(spec=edited, sync_id=sync_id, poll=FAST_POLL, return_state=True)

    assert state.is_failed()
    message = message_of(state)
    assert f"[connect] source '{source_key}': streams:" in message, message
    assert "charges, invoices" in message and "charges, customers" in message, message
    # Stopped before syncing the old set under the new spec's name.
    assert mutating_counts(emulator) == before


async def test_edited_provider_stops_the_resume_naming_the_source(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    await Secret(value={"personal_access_token": "ghp_test1", "repositories": ["acme/app"]}).save(
        "github-test-credentials", overwrite=True
    )
    sync_id = str(uuid.uuid4())
    await _fail_at(emulator, "connect", stripe_spec(source_key), sync_id)
    before = mutating_counts(emulator)
    [source] = [s for s in emulator.sources("acme") if s["source_key"] == source_key]

    edited = stripe_spec(
        source_key, provider_key="github", streams=None, credentials_secret="github-test-credentials"
    )
    state = await connect_source(spec=edited, sync_id=sync_id, poll=FAST_POLL, return_state=True)

    assert state.is_failed()
    message = message_of(state)
    assert f"source '{source_key}'" in message and f"source {source['source_id']}" in message, message
    assert "provider" in message and "stripe" in message and "github" in message, message
    # The stripe source was neither provisioned with the GitHub token nor connected nor synced.
    assert mutating_counts(emulator) == before


def _fingerprint(emulator: Emulator, source_id: int) -> str:
    credential = emulator.runtime.store.get(CredentialRec, source_id)
    assert credential is not None
    return credential.fingerprint


async def test_edited_credentials_secret_is_provisioned_on_resume(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    await Secret(
        value={"api_key": "sk_test_rotated-7c2d", "account_id": "acct_test2", "start_date": "2026-01-01"}
    ).save("stripe-rotated-credentials", overwrite=True)
    sync_id = str(uuid.uuid4())
    # Failed at connect: provision had finished with the first secret.
    await _fail_at(emulator, "connect", stripe_spec(source_key), sync_id)
    [source] = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    first = _fingerprint(emulator, source["source_id"])
    before = mutating_counts(emulator)

    edited = stripe_spec(source_key, credentials_secret="stripe-rotated-credentials")
    summary = await connect_source(spec=edited, sync_id=sync_id, poll=FAST_POLL)

    assert summary.status == "succeeded" and summary.source_id == source["source_id"]
    after = mutating_counts(emulator)
    assert after["create"] == before["create"]
    assert after["provision"] == before["provision"] + 1, "the edited secret was not provisioned"
    assert _fingerprint(emulator, source["source_id"]) != first


# --- (h) a bad source_key, before any call ---------------------------------------------------------------


@pytest.fixture
def no_calls(emulator: Emulator) -> Iterator[None]:
    before = sum(emulator.counts().values())
    yield
    assert sum(emulator.counts().values()) == before, "Splendor was called"


@pytest.mark.parametrize(
    "bad",
    ["../x", "..", "a/b", "x/../../y", "", " x", "x\n", "k" * 129, "ключ", "x%2F..%2Fy"],
    ids=[
        "parent",
        "dotdot",
        "slash",
        "nested",
        "empty",
        "space",
        "newline",
        "too-long",
        "unicode",
        "encoded",
    ],
)
async def test_bad_source_key_fails_before_any_call(bad: str, no_calls: None) -> None:
    state = await sync_source(source_key=bad, sync_id=str(uuid.uuid4()), return_state=True)
    assert state.is_failed()
    message = message_of(state)
    assert "source_key" in message and "is not allowed" in message, message


async def test_a_bad_run_records_setting_fails_before_any_call(
    monkeypatch: pytest.MonkeyPatch, no_calls: None
) -> None:
    monkeypatch.setenv("SPLENDOR_RUN_RECORDS", "redis")
    state = await sync_source(source_key="billing", sync_id=str(uuid.uuid4()), return_state=True)
    assert state.is_failed()
    message = message_of(state)
    assert "SPLENDOR_RUN_RECORDS must be 'prefect-variables' or 'result-storage', got 'redis'" in message
