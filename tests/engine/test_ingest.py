"""Enqueue-or-find and the wait for ingestion (fake clock, fake API)."""

import pytest

from splendor_api import OutcomeUnknown
from splendor_api.models import IngestStatus
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.ingest import NO_LANDED_DATA, enqueue_or_find, wait_for_ingest
from splendor_flows.engine.polling import MALFORMED_LIMIT, PollOptions
from splendor_flows.engine.report import Event
from tests.engine.fakes import LOST, Harness, api_error, exhausted, harness, malformed, shed

OPTIONS = PollOptions(initial_seconds=1, cap_seconds=30, factor=2, deadline_seconds=3600)


async def test_a_run_is_enqueued_once() -> None:
    h = harness()
    first = await enqueue_or_find(h.ctx, 12, run_id=5)
    again = await enqueue_or_find(h.ctx, 12, run_id=5)
    assert first.ingest_run_ids == again.ingest_run_ids == ["ing_5"]
    assert h.api.calls["enqueue_ingest"] == 1 and h.api.calls["list_ingest_runs"] == 2
    assert h.report.event_names() == [Event.INGEST_ENQUEUED]


async def test_existing_ingest_runs_of_the_run_are_found_first() -> None:
    h = harness()
    await h.api.enqueue_ingest(12, 5)  # someone else handed it over already
    await h.api.enqueue_ingest(12, 6)
    found = await enqueue_or_find(h.ctx, 12, run_id=5)
    assert found.ingest_run_ids == ["ing_5"] and found.statuses == {"ing_5": IngestStatus.QUEUED}
    assert h.api.calls["enqueue_ingest"] == 2  # only the two above
    assert h.report.event_names() == []


async def test_look_first_can_be_skipped_for_a_run_just_started() -> None:
    h = harness()
    await enqueue_or_find(h.ctx, 12, run_id=5, look_first=False)
    assert h.api.calls["list_ingest_runs"] == 0 and h.api.calls["enqueue_ingest"] == 1


async def test_no_landed_data_skips_ingestion() -> None:
    h = harness(landed_data=False)
    result = await enqueue_or_find(h.ctx, 12, run_id=5)
    assert result.skipped_reason == NO_LANDED_DATA and result.ingest_run_ids == []
    assert h.report.logs == [("warning", "Run 5 landed no data: nothing to ingest")]


async def test_an_unknown_enqueue_outcome_is_read_back() -> None:
    h = harness()
    h.api.failures["enqueue_ingest"] = [LOST]
    result = await enqueue_or_find(h.ctx, 12, run_id=5, look_first=False)
    assert result.ingest_run_ids == ["ing_5"] and h.api.calls["enqueue_ingest"] == 1


async def test_an_unknown_enqueue_that_did_not_happen_is_raised() -> None:
    from tests.engine.fakes import outcome_unknown

    h = harness()
    h.api.failures["enqueue_ingest"] = [outcome_unknown("enqueue_ingest")]
    with pytest.raises(OutcomeUnknown):
        await enqueue_or_find(h.ctx, 12, run_id=5, look_first=False)


async def _enqueued(h: Harness, statuses: list[str]) -> list[str]:
    h.api.ingest_script = statuses
    return (await enqueue_or_find(h.ctx, 12, run_id=5)).ingest_run_ids


async def test_the_wait_ends_when_ingestion_is_ready() -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED, IngestStatus.PROCESSING, IngestStatus.READY])
    result = await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
    assert result.statuses == {"ing_5": IngestStatus.READY}
    assert h.api.calls["get_ingest_run"] == 3 and h.clock.sleeps == [2, 4]
    assert h.report.event_names()[-1] == Event.INGEST_READY


async def test_failed_ingestion_is_raised_and_announced() -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED, IngestStatus.FAILED])
    with pytest.raises(PermanentStepError, match=r"\[ingest\] source 'stripe-prod': ingestion failed"):
        await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
    assert h.report.event_names()[-1] == Event.INGEST_FAILED


async def test_an_unknown_ingest_status_fails_closed() -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED, "teleported"])
    with pytest.raises(PermanentStepError, match="ingest run ing_5 has an unknown status 'teleported'"):
        await wait_for_ingest(h.ctx, 5, ids, OPTIONS)


async def test_a_vanished_ingest_run_stops_the_wait() -> None:
    h = harness()
    with pytest.raises(PermanentStepError, match="ingest run ing_404 no longer exists"):
        await wait_for_ingest(h.ctx, 5, ["ing_404"], OPTIONS)
    assert h.api.calls["get_ingest_run"] == 1


@pytest.mark.parametrize("status", [401, 403, 422])
async def test_answers_that_cannot_change_stop_the_wait(status: int) -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED])
    h.api.failures["get_ingest_run"] = [api_error(status) for _ in range(50)]
    with pytest.raises(PermanentStepError, match=f"HTTP {status}"):
        await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
    assert h.api.calls["get_ingest_run"] == 1


async def test_malformed_ingest_answers_stop_after_a_bound() -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED])
    h.api.failures["get_ingest_run"] = [malformed() for _ in range(50)]
    with pytest.raises(PermanentStepError, match="unusable answers in a row"):
        await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
    assert h.api.calls["get_ingest_run"] == MALFORMED_LIMIT


async def test_an_outage_slows_the_wait_until_the_deadline() -> None:
    h = harness()
    ids = await _enqueued(h, [IngestStatus.QUEUED, IngestStatus.READY])
    h.api.failures["get_ingest_run"] = [exhausted() for _ in range(6)] + [shed(retry_after=40)]
    result = await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
    assert result.statuses == {"ing_5": IngestStatus.READY}
    assert h.clock.sleeps[:7] == [1, 2, 4, 8, 16, 30, 40]
    h.api.failures["get_ingest_run"] = [shed() for _ in range(500)]
    with pytest.raises(DeadlineExceeded, match="ingestion not ready after 3600 s"):
        await wait_for_ingest(h.ctx, 5, ids, OPTIONS)
