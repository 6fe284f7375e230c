"""The attempt loop and the whole sync → ingest sequence over a checkpoint store: what a fresh run
does, and what a resume does from every state it can find (fake clock, fake API, memory store)."""

import pytest

from splendor_api.models import RunStatus
from splendor_flows.engine.errors import StepError
from splendor_flows.engine.pipeline import StoredSteps, sync_and_ingest
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.results import FinishedRun, StartedRun, SyncOutcome
from splendor_flows.engine.run_records import MemoryRunRecords
from splendor_flows.engine.scope import Step
from splendor_flows.engine.store import MemoryStore, checkpoint_key
from splendor_flows.engine.sync import MAX_TOTAL_ATTEMPTS
from tests.engine.fakes import FakeScope, Harness, harness

OPTIONS = PollOptions(initial_seconds=1, cap_seconds=30, deadline_seconds=3600)
SCOPE = FakeScope()
OK = [RunStatus.RUNNING, RunStatus.SUCCEEDED]
FAIL = [RunStatus.RUNNING, RunStatus.FAILED]


async def run(
    h: Harness, store: MemoryStore, *, max_sync_attempts: int = 2, wait_ready: bool = True
) -> SyncOutcome:
    steps = StoredSteps(h.ctx, store, source_id=12, trigger="manual", poll=OPTIONS)
    return await sync_and_ingest(
        h.ctx.scope, h.report, steps, max_sync_attempts=max_sync_attempts, wait_ready=wait_ready
    )


def started(run_id: int, attempt: int) -> StartedRun:
    return StartedRun(run_id=run_id, attempt=attempt, attached=False, status=RunStatus.PENDING)


def finished(run_id: int, status: RunStatus, records: int | None = 7) -> FinishedRun:
    return FinishedRun(
        run_id=run_id,
        status=status,
        records_synced=records,
        bytes_synced=None,
        error_message=None,
        duration_seconds=1.0,
        polls=3,
    )


async def checkpoint(
    store: MemoryStore, step: Step, value: StartedRun | FinishedRun, **ordinals: int
) -> None:
    await store.put(checkpoint_key(step, SCOPE, **ordinals), value)


async def test_a_fresh_pass_syncs_hands_over_and_leaves_a_checkpoint_per_step() -> None:
    h, store = harness(run_scripts=[OK]), MemoryStore()
    outcome = await run(h, store)
    assert outcome.run.status == RunStatus.SUCCEEDED and not outcome.resumed
    assert outcome.ingest is not None and outcome.ingest.statuses == {"ing_1": "ready"}
    assert (h.api.calls["start_sync"], h.api.calls["enqueue_ingest"]) == (1, 1)
    assert h.api.calls["list_ingest_runs"] == 0  # nobody else can have handed over a run we just started
    assert outcome.polls == h.api.calls["refresh_run"] == 2
    assert sorted(store.saved) == sorted(
        [
            checkpoint_key(Step.SYNC, SCOPE, source_id=12, attempt=1),
            checkpoint_key(Step.POLL, SCOPE, run_id=1),
            checkpoint_key(Step.ENQUEUE_INGEST, SCOPE, run_id=1),
            checkpoint_key(Step.INGEST_READY, SCOPE, run_id=1),
        ]
    )
    assert [name for name, _ in h.report.steps] == ["sync", "poll", "enqueue-ingest", "ingest-ready"]


async def test_a_second_pass_with_the_same_checkpoints_calls_nothing() -> None:
    h, store = harness(run_scripts=[OK]), MemoryStore()
    await run(h, store)
    calls = sum(h.api.calls.values())
    again = await run(h, store)
    assert again.resumed and again.polls == 0 and sum(h.api.calls.values()) == calls


async def test_a_failed_run_is_tried_again_within_the_pass() -> None:
    h = harness(run_scripts=[FAIL, OK])
    outcome = await run(h, MemoryStore(), max_sync_attempts=2)
    assert [r.status for r in outcome.attempts] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    assert h.api.calls["start_sync"] == 2


async def test_new_attempts_are_bounded_per_pass() -> None:
    h = harness(run_scripts=[FAIL, FAIL, FAIL])
    with pytest.raises(StepError) as caught:
        await run(h, MemoryStore(), max_sync_attempts=2)
    assert "2 sync attempt(s) failed in this run; last run 2 ended failed" in str(caught.value)
    assert "sync_id=sync-1" in str(caught.value)
    assert h.api.calls["start_sync"] == 2


async def test_all_attempts_of_a_sync_id_are_bounded() -> None:
    h, store = harness(), MemoryStore()
    for attempt in range(1, MAX_TOTAL_ATTEMPTS + 1):
        await checkpoint(store, Step.SYNC, started(attempt, attempt), source_id=12, attempt=attempt)
        await checkpoint(store, Step.POLL, finished(attempt, RunStatus.CANCELLED), run_id=attempt)
    with pytest.raises(StepError, match=f"gave up after {MAX_TOTAL_ATTEMPTS} attempts in total"):
        await run(h, store, max_sync_attempts=1)
    assert h.api.calls["start_sync"] == 0


async def test_resume_attaches_to_the_run_in_flight_and_never_starts_another() -> None:
    h, store = harness(), MemoryStore()
    in_flight = h.api.add_run([RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.SUCCEEDED])
    await checkpoint(store, Step.SYNC, started(in_flight.run_id, 1), source_id=12, attempt=1)
    outcome = await run(h, store)
    assert outcome.run.run_id == in_flight.run_id and outcome.resumed
    assert h.api.calls["start_sync"] == 0 and len(h.api.runs) == 1
    assert h.api.calls["list_ingest_runs"] == 1  # resumed: look before handing over


async def test_resume_of_a_succeeded_run_goes_straight_to_ingestion() -> None:
    h, store = harness(), MemoryStore()
    done = h.api.add_run([RunStatus.SUCCEEDED])
    await checkpoint(store, Step.SYNC, started(done.run_id, 1), source_id=12, attempt=1)
    await checkpoint(store, Step.POLL, finished(done.run_id, RunStatus.SUCCEEDED), run_id=done.run_id)
    await h.api.enqueue_ingest(12, done.run_id)  # handed over before the crash, not checkpointed
    outcome = await run(h, store)
    assert outcome.run.run_id == done.run_id
    assert h.api.calls["start_sync"] == h.api.calls["refresh_run"] == 0
    assert h.api.calls["enqueue_ingest"] == 1  # only the one above: it was found, not enqueued again


async def test_resume_of_a_failed_run_starts_a_new_one_without_spending_the_budget() -> None:
    h, store = harness(run_scripts=[OK]), MemoryStore()
    failed = h.api.add_run([RunStatus.FAILED])
    await checkpoint(store, Step.SYNC, started(failed.run_id, 1), source_id=12, attempt=1)
    await checkpoint(store, Step.POLL, finished(failed.run_id, RunStatus.FAILED), run_id=failed.run_id)
    outcome = await run(h, store, max_sync_attempts=1)
    assert [r.run_id for r in outcome.attempts] == [failed.run_id, 2]
    assert h.api.calls["start_sync"] == 1
    assert store.saved[checkpoint_key(Step.SYNC, SCOPE, source_id=12, attempt=2)] is not None


async def test_a_run_started_elsewhere_is_attached_and_counts_as_resumed() -> None:
    h = harness()
    console = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    outcome = await run(h, MemoryStore())
    assert outcome.run.run_id == console.run_id and outcome.resumed
    assert h.api.calls["start_sync"] == 1 and len(h.api.runs) == 1


async def test_zero_records_is_flagged_on_the_outcome() -> None:
    h = harness(run_scripts=[OK], records=0)
    outcome = await run(h, MemoryStore())
    assert outcome.zero_records and outcome.run.status == RunStatus.SUCCEEDED
    assert outcome.warnings() == ["run 1 succeeded with 0 records"]


async def test_no_landed_data_or_no_wait_skips_the_ingest_wait() -> None:
    h = harness(run_scripts=[OK], landed_data=False)
    outcome = await run(h, MemoryStore())
    assert outcome.ingest is not None and outcome.ingest.skipped_reason
    assert h.api.calls["get_ingest_run"] == 0
    h = harness(run_scripts=[OK])
    await run(h, MemoryStore(), wait_ready=False)
    assert h.api.calls["get_ingest_run"] == 0


async def test_resume_on_another_worker_gets_a_fresh_budget_too() -> None:
    """Without the first worker's checkpoints, the attempts its run records name (runs that had ended)
    come back whole as they would from checkpoints: they do not spend the resume's budget."""
    records = MemoryRunRecords()
    h = harness(run_records=records, run_scripts=[FAIL, FAIL, OK])
    with pytest.raises(StepError, match="2 sync attempt"):
        await run(h, MemoryStore(), max_sync_attempts=2)

    outcome = await run(h, MemoryStore(), max_sync_attempts=2)

    assert [r.status for r in outcome.attempts] == [RunStatus.FAILED, RunStatus.FAILED, RunStatus.SUCCEEDED]
    assert h.api.calls["start_sync"] == 3 and outcome.resumed
