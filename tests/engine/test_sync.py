"""The sync state machine: start or attach, and the poll loop's rules (fake clock, fake API)."""

from pathlib import Path

import pytest

from splendor_api import Conflict, OutcomeUnknown
from splendor_api.models import RunStatus
from splendor_flows.engine.errors import CONNECT_FIRST, DeadlineExceeded, PermanentStepError
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.polling import MALFORMED_LIMIT, PollOptions
from splendor_flows.engine.report import Event
from splendor_flows.engine.sync import START_TRIES, start_or_attach, wait_and_finish
from tests.engine.fakes import LOST, api_error, exhausted, harness, malformed, outcome_unknown, shed

OPTIONS = PollOptions(initial_seconds=1, cap_seconds=30, factor=2, deadline_seconds=6 * 3600)

# --- start or attach ------------------------------------------------------------------------------


async def test_a_fresh_start_is_announced() -> None:
    h = harness()
    started, run = await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")
    assert (started.run_id, started.attached, started.status) == (run.run_id, False, RunStatus.PENDING)
    assert h.report.event_names() == [Event.SYNC_STARTED]


async def test_a_sync_in_flight_is_attached_to() -> None:
    h = harness()
    console = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    started, run = await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")
    assert started.run_id == console.run_id and started.attached
    assert run.status == RunStatus.RUNNING
    assert len(h.api.runs) == 1 and h.report.event_names() == []


async def test_an_unknown_start_is_asked_again_and_attaches_to_the_run_it_made() -> None:
    # An API that cannot list runs: the re-ask's 409 is what reveals the run.
    h = harness(can_list_runs=False)
    h.api.failures["start_sync"] = [LOST]
    started, _ = await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")
    assert started.attached and started.run_id == 1
    assert h.api.calls["start_sync"] == 2 and len(h.api.runs) == 1


async def test_unknown_outcomes_are_asked_a_bounded_number_of_times() -> None:
    h = harness()
    h.api.failures["start_sync"] = [outcome_unknown() for _ in range(START_TRIES + 2)]
    with pytest.raises(OutcomeUnknown):
        await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")
    assert h.api.calls["start_sync"] == START_TRIES


async def test_no_connection_is_permanent_and_says_what_to_do() -> None:
    h = harness(connected=False)
    with pytest.raises(PermanentStepError) as caught:
        await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")
    assert "[sync] source 'stripe-prod': the source has no connection" in str(caught.value)
    assert CONNECT_FIRST in str(caught.value)
    assert h.api.calls["start_sync"] == 1


async def test_other_conflicts_are_not_swallowed() -> None:
    h = harness()
    h.api.failures["start_sync"] = [Conflict(status=409, method="POST", path="/x", detail={"code": "odd"})]
    with pytest.raises(Conflict):
        await start_or_attach(h.ctx, 12, attempt=1, trigger="manual")


# --- the poll loop --------------------------------------------------------------------------------


async def test_incomplete_keeps_polling_until_succeeded() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.INCOMPLETE, RunStatus.INCOMPLETE, RunStatus.SUCCEEDED])
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.SUCCEEDED and finished.records_synced == 42
    assert finished.polls == 3 and h.api.calls["refresh_run"] == 3
    assert finished.duration_seconds == pytest.approx(h.clock.t)
    assert h.report.event_names() == [Event.SYNC_SUCCEEDED]
    assert h.report.progress_values[0] == 0.0 and h.report.progress_values[-1] == 100.0


async def test_a_failed_run_is_reported_not_raised() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.FAILED])
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.FAILED and finished.error_message
    assert h.report.event_names() == [Event.SYNC_FAILED]
    assert any(level == "error" and "ended failed" in text for level, text in h.report.logs)


async def test_zero_records_is_a_warning() -> None:
    h = harness(records=0)
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.SUCCEEDED and finished.records_synced == 0
    assert (
        "warning",
        f"Run {run.run_id} succeeded with 0 records: check the source's filters and credentials",
    ) in (h.report.logs)


async def test_unknown_status_fails_closed() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.RUNNING, "paused-ish"])
    with pytest.raises(PermanentStepError, match="run 1 has an unknown status 'paused-ish'") as caught:
        await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert str(caught.value).startswith("[poll] source 'stripe-prod'")


async def test_an_answer_just_received_is_not_asked_for_again_at_once() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.PENDING, RunStatus.SUCCEEDED])
    await wait_and_finish(h.ctx, run.run_id, OPTIONS, known=run)
    assert h.clock.sleeps[0] == 1.0 and h.api.calls["refresh_run"] == 1


async def test_a_terminal_known_answer_needs_no_poll() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.SUCCEEDED])
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS, known=run)
    assert finished.status == RunStatus.SUCCEEDED and h.api.calls["refresh_run"] == 0


async def test_the_history_aims_the_polls_and_learns_the_duration(tmp_path: Path) -> None:
    history = RunHistory(tmp_path / "h.json")
    for _ in range(3):
        history.record("acme", "stripe-prod", 120.0)
    h = harness(history=history)
    run = h.api.add_run([RunStatus.RUNNING] * 3 + [RunStatus.SUCCEEDED])
    await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    # The first sleep is long (toward the expected window), not the 1 s of the plain backoff.
    assert h.clock.sleeps[1] == 30.0
    assert history.durations("acme", "stripe-prod")[-1] == pytest.approx(h.clock.t)


# --- failed poll requests -------------------------------------------------------------------------


async def test_transient_failures_never_fail_the_sync() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    h.api.failures["refresh_run"] = [
        shed(),
        api_error(502),
        exhausted(),
        malformed(),
        outcome_unknown("refresh"),
    ]
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.SUCCEEDED
    assert h.api.calls["refresh_run"] == 6


async def test_an_outage_lasting_hours_waits_until_the_run_ends() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    # Five hours of 503s (the client's own retries spent each time), then the API is back.
    h.api.failures["refresh_run"] = [exhausted() for _ in range(5 * 3600 // 30)]
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.SUCCEEDED
    assert 4 * 3600 < h.clock.t < OPTIONS.deadline_seconds


async def test_an_outage_past_the_deadline_ends_with_a_resume_hint() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING])
    h.api.failures["refresh_run"] = [shed() for _ in range(1000)]
    with pytest.raises(DeadlineExceeded) as caught:
        await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert "run 1 still not finished after 21600 s" in str(caught.value)
    assert "sync_id=sync-1" in str(caught.value)
    assert OPTIONS.deadline_seconds < h.clock.t <= OPTIONS.deadline_seconds + OPTIONS.cap_seconds


async def test_a_run_that_never_ends_hits_the_deadline() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING])
    with pytest.raises(DeadlineExceeded):
        await wait_and_finish(h.ctx, run.run_id, PollOptions(deadline_seconds=600))
    assert h.api.calls["refresh_run"] < 40


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "the token is missing or expired"),
        (403, "the token lacks the admin role for tenant acme"),
        (404, "run 1 no longer exists"),
        (422, "Splendor rejected the request"),
    ],
)
async def test_answers_that_cannot_change_stop_polling_at_once(status: int, words: str) -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING])
    h.api.failures["refresh_run"] = [api_error(status, "token expired at 09:00") for _ in range(100)]
    with pytest.raises(PermanentStepError) as caught:
        await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    text = str(caught.value)
    assert text.startswith("[poll] source 'stripe-prod': ")
    assert f"HTTP {status}: token expired at 09:00" in text and words in text
    assert h.api.calls["refresh_run"] == 1 and h.clock.t == 0


async def test_a_run_that_vanished_stops_polling() -> None:
    h = harness()
    with pytest.raises(PermanentStepError, match="run 99 no longer exists"):
        await wait_and_finish(h.ctx, 99, OPTIONS)
    assert h.api.calls["refresh_run"] == 1


async def test_malformed_answers_stop_polling_after_a_bound() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING])
    h.api.failures["refresh_run"] = [malformed() for _ in range(100)]
    with pytest.raises(PermanentStepError) as caught:
        await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert f"{MALFORMED_LIMIT} unusable answers in a row" in str(caught.value)
    assert "missing run.status" in str(caught.value)
    assert h.api.calls["refresh_run"] == MALFORMED_LIMIT


async def test_malformed_answers_between_good_ones_are_tolerated() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUCCEEDED])
    almost = [malformed() for _ in range(MALFORMED_LIMIT - 1)]
    h.api.failures["refresh_run"] = [*almost, None, *almost]
    finished = await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    assert finished.status == RunStatus.SUCCEEDED


async def test_failures_back_off_and_honour_retry_after() -> None:
    h = harness()
    run = h.api.add_run([RunStatus.RUNNING, RunStatus.SUCCEEDED])
    h.api.failures["refresh_run"] = [exhausted() for _ in range(7)] + [shed(retry_after=45)]
    await wait_and_finish(h.ctx, run.run_id, OPTIONS)
    # No answer yet, so nothing to plan from: the pauses grow with each failure up to the cap...
    assert h.clock.sleeps[:7] == [1, 2, 4, 8, 16, 30, 30]
    # ...and a Retry-After longer than that is honoured.
    assert h.clock.sleeps[7] == 45


def test_only_failures_another_try_could_fix_are_transient() -> None:
    from splendor_api.errors import Unauthorized, Unavailable
    from splendor_flows.engine.errors import PermanentStepError, StepError, is_transient

    def answered(error: type[Unauthorized | Unavailable], status: int) -> Unauthorized | Unavailable:
        return error(status=status, method="POST", path="/v1/admin/x", detail=None)

    assert is_transient(ConnectionResetError("peer went away"))
    assert is_transient(answered(Unavailable, 503))
    assert not is_transient(answered(Unauthorized, 401))
    assert not is_transient(StepError("poll", "k", "2 sync attempt(s) failed"))
    assert not is_transient(PermanentStepError("sync", "k", "the source has no connection"))
    assert not is_transient(ValueError("a model refused the value"))
