"""repair-ingest against the emulator: a failed ingestion is queued again and ends ready, a permanent
failure is reported and left alone, and both bounds hold. The rules in detail: tests/engine/test_repair.py."""

import uuid
from typing import Any

from splendor_emulator import Emulator
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.repair import RepairReport, Verdict
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.repair_ingest import repair_ingest
from splendor_flows.flows.sync_source import sync_source
from tests.flows.conftest import MUTATING, stripe_spec

FAST_POLL = PollOptions(initial_seconds=0.1, cap_seconds=0.3, deadline_seconds=10)


async def onboard_with_failed_ingest(
    emulator: Emulator, source_key: str, ingest_error: str = "parse_failed", failures: int = 1
) -> tuple[int, int]:
    """Connect the source with its ingestion failing; returns (source_id, run_id)."""
    emulator.add_fault(kind="ingest_fail", count=failures, source_key=source_key, ingest_error=ingest_error)
    state = await connect_source(
        spec=stripe_spec(source_key), sync_id=str(uuid.uuid4()), poll=FAST_POLL, return_state=True
    )
    assert state.is_failed()
    assert "ingestion failed for run" in str(state.message) and ingest_error in str(state.message)
    source = next(s for s in emulator.sources("acme") if s["source_key"] == source_key)
    [run] = emulator.runs("acme", source_id=source["source_id"])
    return source["source_id"], run["run_id"]


def enqueues(emulator: Emulator) -> int:
    return emulator.count(MUTATING["enqueue"])


async def repair(source_key: str, **options: Any) -> RepairReport:
    report = await repair_ingest(source_key=source_key, poll=FAST_POLL, **options)
    assert isinstance(report, RepairReport)
    return report


async def test_a_failed_ingest_is_repaired_and_ready(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    _, run_id = await onboard_with_failed_ingest(emulator, source_key)
    before = enqueues(emulator)

    report = await repair(source_key)

    [run] = report.runs
    assert (run.run_id, run.verdict, run.enqueued) == (run_id, Verdict.REPAIRED, 1)
    assert run.error_codes() == ["parse_failed"] and enqueues(emulator) == before + 1
    of_run = [i for i in emulator.ingest_runs("acme") if i["connector_run_id"] == run_id]
    assert sorted(i["status"] for i in of_run) == ["ready", "ready", "superseded"]

    # Repairing again (or after a crash) queues nothing: the run is ready.
    again = await repair(source_key, run_id=run_id)
    assert [r.verdict for r in again.runs] == [Verdict.READY] and enqueues(emulator) == before + 1
    assert (await repair(source_key)).runs == []


async def test_a_permanent_failure_is_reported_not_repaired(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    _, run_id = await onboard_with_failed_ingest(emulator, source_key, "unsupported_format")
    before = enqueues(emulator)

    report = await repair(source_key)

    [run] = report.not_repaired()
    assert run.run_id == run_id and run.verdict == Verdict.PERMANENT and "unsupported_format" in run.reason
    assert enqueues(emulator) == before


async def test_attempts_and_runs_are_bounded(emulator: Emulator, source_key: str, stripe_secret: str) -> None:
    # The run lands two objects: their first ingestion and the next two repairs all fail.
    _, first_run = await onboard_with_failed_ingest(emulator, source_key, failures=6)
    before = enqueues(emulator)
    [run] = (await repair(source_key, max_attempts=2)).runs
    assert (run.verdict, run.attempts, run.enqueued) == (Verdict.EXHAUSTED, 2, 2)
    assert enqueues(emulator) == before + 2

    # A second failed sync: one run per call repairs the newest and reports the other as skipped.
    emulator.add_fault(kind="ingest_fail", count=1, source_key=source_key)
    state = await sync_source(source_key=source_key, poll=FAST_POLL, return_state=True)
    assert state.is_failed()
    before = enqueues(emulator)
    runs = (await repair(source_key, max_attempts=3, max_runs=1)).runs
    assert [(r.run_id > first_run, r.verdict) for r in runs] == [
        (True, Verdict.REPAIRED),
        (False, Verdict.SKIPPED),
    ]
    assert enqueues(emulator) == before + 1
