"""Start records shared by every worker: a resume anywhere never starts a second run for an attempt
that has one, and stops (starting nothing) when it cannot tell."""

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest

from splendor_api import RetriesExhausted
from splendor_api.models import RunStatus
from splendor_flows.engine.context import Deferred
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.run_records import (
    KEEP,
    MemoryFiles,
    MemoryRunRecords,
    RunRecords,
    SourceRuns,
    StartRecord,
    StoredRunRecords,
    pipeline_of,
)
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.engine.sync import start_or_attach
from tests.engine.fakes import LOST, FakeScope, Harness, exhausted, harness, outcome_unknown, shed

NewRecords = Callable[[], RunRecords]


@pytest.fixture(params=["memory", "beside-checkpoints"])
def new_records(request: pytest.FixtureRequest) -> NewRecords:
    """Every rule holds wherever the records are kept: in memory, or as files of a shared store."""
    if request.param == "memory":
        return MemoryRunRecords
    return lambda: StoredRunRecords(MemoryFiles())


async def test_a_start_is_recorded_before_it_is_sent_and_again_with_its_run(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records)
    seen: list[SourceRuns] = []
    real_start = h.api.start_sync

    async def spying_start(source_id: int, trigger: str = "manual"):  # type: ignore[no-untyped-def]
        seen.append(await records.read(h.ctx.scope))
        return await real_start(source_id, trigger)

    h.api.start_sync = spying_start  # type: ignore[method-assign]
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    [intent] = seen[0].starts
    assert intent.run_id is None and intent.attempt == 1
    [final] = (await records.read(h.ctx.scope)).starts
    assert final.run_id == started.run_id and final.requested_at == intent.requested_at


async def test_resume_on_another_worker_attaches_to_the_recorded_run_even_when_finished(
    new_records: NewRecords,
) -> None:
    """The case local checkpoints cannot cover: the first worker's files are gone, its run succeeded."""
    records = new_records()
    first = harness(run_records=records)
    started, _ = await start_or_attach(first.ctx, 12, 1, "manual")
    first.api.runs[started.run_id] = first.api.runs[started.run_id].model_copy(
        update={"status": RunStatus.SUCCEEDED}
    )
    # Another worker: no checkpoint, same records, same Splendor.
    again, run = await start_or_attach(first.ctx, 12, 1, "manual")
    assert again.run_id == started.run_id and again.attached and run.status == RunStatus.SUCCEEDED
    assert first.api.calls["start_sync"] == 1


async def test_a_lost_start_answer_finds_its_run_by_listing_the_source_runs(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records, failures={"start_sync": [LOST]})
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    assert started.attached and h.api.calls["start_sync"] == 1 and len(h.api.runs) == 1
    [record] = (await records.read(h.ctx.scope)).starts
    assert record.run_id == started.run_id


async def test_a_lost_start_whose_run_already_finished_is_not_started_twice(new_records: NewRecords) -> None:
    # Without the list, the re-ask would get no 409 (the run is over) and start a second sync.
    h = harness(records=new_records(), failures={"start_sync": [LOST]}, run_scripts=[[RunStatus.SUCCEEDED]])
    real_list = h.api.list_runs

    async def after_it_finished(source_id: int, limit: int = 20):  # type: ignore[no-untyped-def]
        for run_id in list(h.api.runs):
            h.api.runs[run_id] = h.api.runs[run_id].model_copy(update={"status": RunStatus.SUCCEEDED})
        return await real_list(source_id, limit)

    h.api.list_runs = after_it_finished  # type: ignore[method-assign]
    _, run = await start_or_attach(h.ctx, 12, 1, "manual")
    assert run.status == RunStatus.SUCCEEDED and len(h.api.runs) == 1 and h.api.calls["start_sync"] == 1


async def test_an_unanswered_recorded_start_with_no_run_since_starts_one(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records)
    await records.write(
        h.ctx.scope,
        SourceRuns(
            starts=[StartRecord(pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=h.clock.now())]
        ),
    )
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    assert not started.attached and h.api.calls["start_sync"] == 1


async def test_an_unanswered_recorded_start_adopts_the_run_created_since(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records)
    requested = h.clock.now()
    await records.write(
        h.ctx.scope,
        SourceRuns(
            starts=[StartRecord(pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=requested)]
        ),
    )
    lost = h.api.add_run([RunStatus.RUNNING])  # what the crashed worker's start created
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    assert started.run_id == lost.run_id and started.attached and h.api.calls["start_sync"] == 0


async def test_an_unanswered_start_stops_when_the_api_cannot_list_runs(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records, can_list_runs=False)
    await records.write(
        h.ctx.scope,
        SourceRuns(
            starts=[StartRecord(pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=h.clock.now())]
        ),
    )
    with pytest.raises(PermanentStepError) as caught:
        await start_or_attach(h.ctx, 12, 1, "manual")
    assert "cannot list the source's runs" in str(caught.value) and "nothing new was started" in str(
        caught.value
    )
    assert h.api.calls["start_sync"] == 0


async def test_several_runs_since_an_unanswered_start_stop_with_their_ids(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records)
    await records.write(
        h.ctx.scope,
        SourceRuns(
            starts=[StartRecord(pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=h.clock.now())]
        ),
    )
    a = h.api.add_run([RunStatus.SUCCEEDED])
    b = h.api.add_run([RunStatus.RUNNING])
    with pytest.raises(PermanentStepError) as caught:
        await start_or_attach(h.ctx, 12, 1, "manual")
    assert f"runs {b.run_id}, {a.run_id}" in str(caught.value) and h.api.calls["start_sync"] == 0


async def _a_later_holder_started_a_run(h: Harness, records: RunRecords, requested: datetime) -> None:
    """This pipeline's unanswered start at `requested`; 80 s later (its lease ran out), another
    pipeline's start on record and the run it started."""
    await h.clock.sleep(80)
    later = h.api.add_run([RunStatus.RUNNING])
    await records.write(
        h.ctx.scope,
        SourceRuns(
            starts=[
                StartRecord(pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=requested),
                StartRecord(
                    pipeline=pipeline_of(FakeScope(sync_id="a-later-tick")),
                    attempt=1,
                    requested_at=h.clock.now(),
                    run_id=later.run_id,
                ),
            ]
        ),
    )


async def test_a_crashed_start_keeps_its_run_when_a_later_holder_synced_the_source_since(
    new_records: NewRecords,
) -> None:
    """A holder killed between its intent and its run-id record: once its lease ran out, another
    pipeline held the source and started a run of its own. The killed pipeline's resume finds two runs
    since its intent; the one created before the later start was recorded is its own (the later holder
    could not have started anything earlier), so it attaches to that one and starts nothing."""
    records = new_records()
    h = harness(run_records=records)
    requested = h.clock.now()
    mine = h.api.add_run([RunStatus.SUCCEEDED])  # created by the killed pipeline's start
    await _a_later_holder_started_a_run(h, records, requested)
    started, run = await start_or_attach(h.ctx, 12, 1, "manual")
    assert started.run_id == mine.run_id and started.attached and run.status == RunStatus.SUCCEEDED
    assert h.api.calls["start_sync"] == 0
    assert (await records.read(h.ctx.scope)).find(pipeline_of(h.ctx.scope), 1) == StartRecord(
        pipeline=pipeline_of(h.ctx.scope), attempt=1, requested_at=requested, run_id=mine.run_id
    )


async def test_two_runs_before_a_later_start_still_stop_with_their_ids(new_records: NewRecords) -> None:
    """Only a single run before the later holder's start can be told apart: two (the console started
    one too) stop as before, starting nothing."""
    records = new_records()
    h = harness(run_records=records)
    requested = h.clock.now()
    a = h.api.add_run([RunStatus.SUCCEEDED])
    b = h.api.add_run([RunStatus.SUCCEEDED])
    await _a_later_holder_started_a_run(h, records, requested)
    with pytest.raises(PermanentStepError) as caught:
        await start_or_attach(h.ctx, 12, 1, "manual")
    assert f"{b.run_id}, {a.run_id}" in str(caught.value) and h.api.calls["start_sync"] == 0


async def test_records_of_other_pipelines_and_apis_are_not_mixed_up(new_records: NewRecords) -> None:
    records = new_records()
    h = harness(run_records=records)
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    h.api.runs[started.run_id] = h.api.runs[started.run_id].model_copy(update={"status": RunStatus.SUCCEEDED})
    for scope in (FakeScope(sync_id="another-sync"), FakeScope(api_base="http://another-splendor.test")):
        other = replace(h.ctx, scope=scope)
        fresh, _ = await start_or_attach(other, 12, 1, "manual")
        assert fresh.run_id != started.run_id and not fresh.attached
        h.api.runs[fresh.run_id] = h.api.runs[fresh.run_id].model_copy(update={"status": RunStatus.SUCCEEDED})


def test_a_source_keeps_a_bounded_number_of_starts() -> None:
    runs = SourceRuns()
    for attempt in range(KEEP + 10):
        runs = runs.with_start(
            StartRecord(pipeline="p", attempt=attempt, requested_at="2026-01-01T00:00:00Z")
        )
    assert len(runs.starts) == KEEP and runs.find("p", KEEP + 9) is not None and runs.find("p", 0) is None


async def test_a_start_the_api_refused_leaves_no_record_to_stop_a_resume(new_records: NewRecords) -> None:
    """Load shed past the retry budget: the start never ran, so a resume on an API that cannot list
    runs starts one instead of stopping on a start that never happened."""
    records = new_records()
    h = harness(run_records=records, can_list_runs=False, failures={"start_sync": [exhausted(shed(1.0))]})
    with pytest.raises(RetriesExhausted):
        await start_or_attach(h.ctx, 12, 1, "manual")
    assert (await records.read(h.ctx.scope)).starts == []

    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    assert not started.attached and h.api.calls["start_sync"] == 2 and len(h.api.runs) == 1


async def test_a_refusal_after_an_unknown_outcome_keeps_the_intent(new_records: NewRecords) -> None:
    records = new_records()
    failures: dict[str, list[BaseException | None]] = {
        "start_sync": [outcome_unknown(), exhausted(shed(1.0))]
    }
    h = harness(run_records=records, can_list_runs=False, failures=failures)
    with pytest.raises(RetriesExhausted):
        await start_or_attach(h.ctx, 12, 1, "manual")
    [intent] = (await records.read(h.ctx.scope)).starts
    assert intent.attempt == 1 and intent.run_id is None


async def test_a_lost_start_does_not_take_the_run_of_an_earlier_attempt(new_records: NewRecords) -> None:
    """A short run of attempt 1 falls inside the clock-skew allowance of attempt 2's lost start: the
    records say it is attempt 1's, so attempt 2 asks again instead of adopting it."""
    records = new_records()
    failures: dict[str, list[BaseException | None]] = {"start_sync": [None, outcome_unknown()]}
    h = harness(
        run_records=records, failures=failures, run_scripts=[[RunStatus.FAILED], [RunStatus.SUCCEEDED]]
    )
    first, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    await h.api.refresh_run(first.run_id)  # it failed within a second
    await h.clock.sleep(1.0)

    second, _ = await start_or_attach(h.ctx, 12, 2, "manual")

    assert second.run_id != first.run_id and not second.attached
    assert h.api.calls["start_sync"] == 3 and len(h.api.runs) == 2


# --- a fleet writes the run id while it already waits for the run (engine.context.Deferred) -----------


class HeldRunIdWrites:
    """Records whose run-id writes wait until released; intents go through at once."""

    def __init__(self, inner: RunRecords) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def read(self, scope: ScopeLike) -> SourceRuns:
        return await self.inner.read(scope)

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        if any(s.run_id is not None for s in runs.starts):
            await self.release.wait()
            if self.fail is not None:
                raise self.fail
        await self.inner.write(scope, runs)

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        await self.inner.intend(scope, runs, start)

    def forget_hint(self, scope: ScopeLike) -> str:
        return self.inner.forget_hint(scope)


async def test_a_deferred_run_id_record_does_not_hold_the_start_back_and_lands_when_settled(
    new_records: NewRecords,
) -> None:
    records = HeldRunIdWrites(new_records())
    h = harness(run_records=records)
    ctx = replace(h.ctx, deferred=Deferred())
    # Returns while the run-id write is held (a start that waited for it would time out here).
    started, _ = await asyncio.wait_for(start_or_attach(ctx, 12, 1, "manual"), timeout=5)
    [intent] = (await records.read(ctx.scope)).starts
    assert intent.run_id is None
    records.release.set()
    await ctx.deferred.settle(h.report)  # type: ignore[union-attr]
    [final] = (await records.read(ctx.scope)).starts
    assert final.run_id == started.run_id


async def test_a_failed_deferred_record_is_a_warning_and_leaves_the_intent(new_records: NewRecords) -> None:
    records = HeldRunIdWrites(new_records())
    records.fail, _ = OSError("bucket unreachable"), records.release.set()
    h = harness(run_records=records)
    ctx = replace(h.ctx, deferred=Deferred())
    await asyncio.wait_for(start_or_attach(ctx, 12, 1, "manual"), timeout=5)
    await ctx.deferred.settle(h.report)  # type: ignore[union-attr]
    assert any("run-id record" in m and "bucket unreachable" in m for _, m in h.report.logs)
    [intent] = (await records.read(ctx.scope)).starts
    assert intent.run_id is None


async def test_the_next_attempt_waits_for_the_last_deferred_record_so_neither_is_lost(
    new_records: NewRecords,
) -> None:
    """Attempt 1's run-id write read the records before attempt 2 recorded its intent: were attempt 2 to
    go ahead, that write would put back records without attempt 2's start."""
    records = HeldRunIdWrites(new_records())
    h = harness(run_records=records)
    ctx = replace(h.ctx, deferred=Deferred())
    first, _ = await asyncio.wait_for(start_or_attach(ctx, 12, 1, "manual"), timeout=5)
    second_attempt = asyncio.ensure_future(start_or_attach(ctx, 12, 2, "manual"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert h.api.calls["start_sync"] == 1  # attempt 2 waits for attempt 1's record
    records.release.set()
    second, _ = await second_attempt
    await ctx.deferred.settle(h.report)  # type: ignore[union-attr]
    starts = {s.attempt: s.run_id for s in (await records.read(ctx.scope)).starts}
    assert starts == {1: first.run_id, 2: second.run_id}
