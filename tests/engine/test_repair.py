"""Ingest repair: which runs are queued again, how often, and what is reported as not repairable
(fake clock, fake API that follows the contract's repair rule)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from splendor_api import Conflict, models
from splendor_api.models import IngestStatus
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.errors import DeadlineExceeded
from splendor_flows.engine.ingest import poll_ingest_runs
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.repair import RunRepair, Verdict, failed_runs, read_ingest, repair_source
from splendor_flows.engine.report import Event, RecordingReporter
from tests.engine.fakes import LOST, FakeApi, FakeClock, FakeScope, Harness, harness

OPTIONS = PollOptions(initial_seconds=1, cap_seconds=30, factor=2, deadline_seconds=3600)
SOURCE = 12


async def failed_ingest(h: Harness, run_id: int, *errors: str | None) -> None:
    """Hand run `run_id` to ingestion with these per-object outcomes and wait until each has ended."""
    h.api.ingest_errors.extend(errors)
    runs = await h.api.enqueue_ingest(SOURCE, run_id)
    await poll_ingest_runs(h.ctx, [r.ingest_run_id for r in runs], OPTIONS)


async def repair(h: Harness, **options: int) -> list[RunRepair]:
    report = await repair_source(h.ctx, SOURCE, poll=OPTIONS, **options)
    return report.runs


def enqueues(h: Harness) -> int:
    return h.api.calls["enqueue_ingest"]


async def test_failures_are_listed_with_their_codes_newest_run_first() -> None:
    h = harness(ingest_keys=["charges.jsonl", "customers.jsonl"])
    await failed_ingest(h, 5, "parse_failed", None)
    await failed_ingest(h, 6, None, None)  # ready: not listed
    await failed_ingest(h, 7, "unsupported_format", "parse_failed")
    listed = failed_runs(await read_ingest(h.api, SOURCE))
    assert [r.run_id for r in listed] == [7, 5]
    assert [(f.key, f.error_code, f.repairable) for f in listed[1].failures] == [
        ("charges.jsonl", "parse_failed", True)
    ]
    assert [(f.error_code, f.repairable) for f in listed[0].failures] == [
        ("unsupported_format", False),
        ("parse_failed", True),
    ]
    assert listed[1].attempts == 0 and listed[1].in_flight == 0
    assert enqueues(h) == 3  # listing changes nothing


async def test_a_repairable_failure_is_queued_again_and_waited_for() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    before = enqueues(h)
    [run] = await repair(h)
    assert run.verdict == Verdict.REPAIRED and run.ok
    assert run.enqueued == 1 and run.attempts == 1 and enqueues(h) == before + 1
    assert [f.error_code for f in run.failed_before] == ["parse_failed"] and run.failed_after == []
    assert h.api.ingest_runs[run.ingest_run_ids[0]].status == IngestStatus.READY
    assert h.api.ingest_runs["ing_5"].status == IngestStatus.SUPERSEDED
    names = h.report.event_names()
    assert names[-2:] == [Event.INGEST_ENQUEUED, Event.INGEST_READY]
    assert h.report.events[-2][1]["repair_attempt"] == 1


async def test_a_run_may_need_several_repairs_within_the_bound() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    h.api.ingest_errors.extend(["parse_failed", "parse_failed"])  # the first two repairs fail again
    [run] = await repair(h, max_attempts=3)
    assert (run.verdict, run.attempts, run.enqueued) == (Verdict.REPAIRED, 3, 3)
    assert h.api.ingest_runs[run.ingest_run_ids[0]].status == IngestStatus.READY


async def test_repairing_twice_queues_nothing_more() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    await repair(h)
    before, ingest_runs = enqueues(h), len(h.api.ingest_runs)
    assert await repair(h) == []  # nothing failed is left: no run needs looking at
    [again] = await repair(h, run_id=5)
    assert again.verdict == Verdict.READY and "repaired 1 time(s) earlier" in again.reason
    assert enqueues(h) == before and len(h.api.ingest_runs) == ingest_runs


async def test_a_permanent_error_is_reported_and_not_queued() -> None:
    h = harness()
    await failed_ingest(h, 5, "unsupported_format")
    before = enqueues(h)
    [run] = await repair(h)
    assert run.verdict == Verdict.PERMANENT and not run.ok
    assert "ing_5 unsupported_format" in run.reason and enqueues(h) == before


async def test_the_repairable_part_of_a_run_is_repaired_beside_a_permanent_one() -> None:
    h = harness(ingest_keys=["charges.jsonl", "customers.jsonl"])
    await failed_ingest(h, 5, "parse_failed", "unsupported_format")
    [run] = await repair(h)
    assert run.verdict == Verdict.PERMANENT and run.enqueued == 1
    assert run.reason.startswith("1 repair(s) made, but") and run.error_codes() == [
        "parse_failed",
        "unsupported_format",
    ]
    assert [f.key for f in run.failed_after] == ["customers.jsonl"]


async def test_repairs_stop_at_max_attempts_counted_by_the_api() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    h.api.ingest_errors.extend(["parse_failed"] * 5)  # every repair fails again
    before = enqueues(h)
    [run] = await repair(h, max_attempts=2)
    assert run.verdict == Verdict.EXHAUSTED and run.attempts == 2 and run.enqueued == 2
    assert enqueues(h) == before + 2
    name, payload = h.report.events[-1]
    assert name == Event.INGEST_FAILED and payload["repair_attempts"] == 2
    assert [e["error_code"] for e in payload["errors"]] == ["parse_failed"]
    # A later call counts the same attempts from Splendor and queues nothing.
    [later] = await repair(h, max_attempts=2)
    assert later.verdict == Verdict.EXHAUSTED and enqueues(h) == before + 2
    [more] = await repair(h, max_attempts=3)
    assert more.attempts == 3 and enqueues(h) == before + 3


async def test_at_most_max_runs_are_repaired_newest_first() -> None:
    h = harness()
    for run_id in (3, 4, 5):
        await failed_ingest(h, run_id, "parse_failed")
    before = enqueues(h)
    runs = await repair(h, max_runs=2)
    assert [(r.run_id, r.verdict) for r in runs] == [
        (5, Verdict.REPAIRED),
        (4, Verdict.REPAIRED),
        (3, Verdict.SKIPPED),
    ]
    assert enqueues(h) == before + 2 and "limit of 2 run(s)" in runs[2].reason
    [rest] = await repair(h, max_runs=2)
    assert (rest.run_id, rest.verdict) == (3, Verdict.REPAIRED)


async def test_a_conflict_is_reported_as_refused() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    h.api.failures["enqueue_ingest"] = [
        Conflict(status=409, method="POST", path="/x", detail={"code": "no_landed_data", "message": "gone"})
    ]
    [run] = await repair(h)
    assert run.verdict == Verdict.REFUSED and "refused" in run.reason and run.enqueued == 0


async def test_an_api_that_keeps_the_failure_is_reported_as_refused() -> None:
    h = harness(requeues=False)
    await failed_ingest(h, 5, "parse_failed")
    before = enqueues(h)
    [run] = await repair(h, max_attempts=5)
    assert run.verdict == Verdict.REFUSED and "kept ing_5 failed" in run.reason
    assert enqueues(h) == before + 1  # asked once, not max_attempts times


async def test_a_repair_in_flight_is_waited_for_not_queued_again() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    await h.api.enqueue_ingest(SOURCE, 5)  # an earlier call queued it and stopped before the end
    before = enqueues(h)
    [run] = await repair(h)
    assert run.verdict == Verdict.READY and run.attempts == 1 and enqueues(h) == before
    assert h.api.ingest_runs[run.ingest_run_ids[0]].status == IngestStatus.READY  # it waited


async def test_a_lost_enqueue_answer_is_read_back_not_resent() -> None:
    h = harness()
    await failed_ingest(h, 5, "parse_failed")
    h.api.failures["enqueue_ingest"] = [LOST]
    before = enqueues(h)
    [run] = await repair(h)
    assert run.verdict == Verdict.REPAIRED and run.enqueued == 1 and enqueues(h) == before + 1


async def test_a_run_never_handed_to_ingestion_is_named() -> None:
    h = harness()
    [run] = await repair(h, run_id=9)
    assert run.verdict == Verdict.NOT_INGESTED and enqueues(h) == 0


@pytest.mark.parametrize(("option", "value"), [("max_attempts", 0), ("max_runs", 101)])
async def test_bounds_out_of_range_are_refused(option: str, value: int) -> None:
    h = harness()
    with pytest.raises(ValueError, match=option):
        await repair(h, **{option: value})


@dataclass
class InterleavedApi(FakeApi):
    """The fake API, with another caller's work done while this call waits on its first ingest run."""

    meanwhile: Callable[[], Awaitable[object]] | None = None

    async def get_ingest_run(self, ingest_run_id: str) -> models.IngestRun:
        other, self.meanwhile = self.meanwhile, None
        if other is not None:
            await other()
        return await super().get_ingest_run(ingest_run_id)


@dataclass
class LaggingListing(FakeApi):
    """A listing that keeps showing ingest runs in flight which, read one by one, have ended."""

    stale: dict[str, models.IngestRun] = field(default_factory=dict)
    listed: int = 0

    async def list_ingest_runs(
        self,
        *,
        source_id: int | None = None,
        dataset_id: str | None = None,
        status: str | None = None,
        include_non_current: bool = False,
    ) -> list[models.IngestRun]:
        self.listed += 1
        # A wait without an end would list forever; this turns it into a failure instead of a hang.
        assert self.listed < 1000, "the repair kept listing the same in-flight run without an end"
        runs = await super().list_ingest_runs(source_id=source_id, include_non_current=include_non_current)
        return [self.stale.get(r.ingest_run_id, r) for r in runs]


def harness_of(api: FakeApi) -> Harness:
    report = RecordingReporter()
    ctx = SourceContext(api=api, scope=FakeScope(), report=report, clock=api.clock)
    return Harness(api.clock, api, report, ctx)


def announced(h: Harness, run_id: int) -> list[dict[str, object]]:
    return [p for name, p in h.report.events if name == Event.INGEST_ENQUEUED and p["run_id"] == run_id]


@pytest.mark.parametrize("other_call", ["finished", "in_flight"])
async def test_a_repair_made_by_another_call_is_counted_and_announced_once(other_call: str) -> None:
    # This call lists runs 7 and 5 as failed and repairs 7 first; while it waits on that repair,
    # another call repairs run 5 (to the end, or only queued and still in flight).
    api = InterleavedApi(FakeClock())
    h = harness_of(api)
    await failed_ingest(h, 5, "parse_failed")
    await failed_ingest(h, 7, "parse_failed")
    other = harness_of(api)

    async def repair_five() -> None:
        if other_call == "finished":
            await repair_source(other.ctx, SOURCE, run_id=5, poll=OPTIONS)
        else:
            await api.enqueue_ingest(SOURCE, 5)

    api.meanwhile = repair_five
    runs = {r.run_id: r for r in await repair(h)}

    assert api.repairs == 2  # Splendor queued each run again once
    assert (runs[7].verdict, runs[7].enqueued) == (Verdict.REPAIRED, 1)
    assert (runs[5].verdict, runs[5].enqueued, runs[5].attempts) == (Verdict.READY, 0, 1)
    assert announced(h, 5) == [] and len(announced(h, 7)) == 1
    if other_call == "finished":
        assert len(announced(other, 5)) == 1


async def test_a_wait_on_a_repair_in_flight_ends_at_the_deadline() -> None:
    api = LaggingListing(FakeClock())
    h = harness_of(api)
    await failed_ingest(h, 5, "parse_failed")
    # Splendor's listing shows the run's ingest run queued for good, while reading it says it failed.
    api.stale["ing_5"] = api.ingest_runs["ing_5"].model_copy(update={"status": IngestStatus.QUEUED})
    started = h.clock.t

    with pytest.raises(DeadlineExceeded) as caught:
        await repair(h, run_id=5)

    message = str(caught.value)
    assert message.startswith("[repair] source 'stripe-prod': run 5:") and "ing_5" in message
    assert f"after {OPTIONS.deadline_seconds:.0f} s" in message
    waited = h.clock.t - started
    assert OPTIONS.deadline_seconds <= waited <= OPTIONS.deadline_seconds + OPTIONS.cap_seconds
    assert enqueues(h) == 1  # the first ingestion only: nothing in flight is queued again
