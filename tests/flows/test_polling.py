"""Polling: schedule shape, unknown statuses fail closed, failed poll requests don't fail the sync."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.polling import PollOptions, next_delay
from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.runtime import use_runtime
from splendor_flows.tasks.sync import wait_for_run


def test_backoff_grows_to_the_cap() -> None:
    options = PollOptions(initial_seconds=1, cap_seconds=30, factor=2)
    delays = [next_delay(options, n, elapsed=0) for n in range(8)]
    assert delays[:3] == [1, 2, 4] and delays[-1] == 30


def test_expected_duration_sleeps_until_near_the_end() -> None:
    options = PollOptions(initial_seconds=1, cap_seconds=30)
    assert next_delay(options, 0, elapsed=0, expected_seconds=20) == pytest.approx(18)
    assert next_delay(options, 3, elapsed=21, expected_seconds=20) == pytest.approx(1.1)
    assert next_delay(options, 0, elapsed=0, expected_seconds=600) == 30  # never beyond the cap


def test_retry_after_is_a_floor() -> None:
    assert next_delay(PollOptions(), 0, elapsed=0, retry_after=7) == 7


def _run(status: str) -> dict[str, Any]:
    return {
        "run_id": 5,
        "source_id": 12,
        "airbyte_job_id": "job_1",
        "trigger": "manual",
        "status": status,
        "records_synced": None,
        "bytes_synced": None,
        "error_message": None,
        "created_at": "2026-01-15T09:30:00Z",
        "started_at": "2026-01-15T09:30:00Z",
        "completed_at": None,
        "updated_at": "2026-01-15T09:30:00Z",
    }


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Response]]:
    responses: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return responses.pop(0) if len(responses) > 1 else responses[0]

    with use_runtime(transport=httpx.MockTransport(handler)):
        yield responses


def _scope() -> Scope:
    return Scope(tenant="acme", source_key="polling-unit", sync_id=str(uuid.uuid4()))


FAST = PollOptions(initial_seconds=0.05, cap_seconds=0.1, deadline_seconds=5)


async def test_unknown_status_fails_closed(scripted: list[httpx.Response]) -> None:
    scripted.extend(
        [
            httpx.Response(200, json={"run": _run("running")}),
            httpx.Response(200, json={"run": _run("paused-ish")}),
        ]
    )
    state = await wait_for_run(_scope(), 5, FAST, return_state=True)
    assert state.is_failed()
    with pytest.raises(PermanentStepError, match="unknown status 'paused-ish'"):
        await state.result()


async def test_failed_poll_requests_do_not_fail_the_sync(scripted: list[httpx.Response]) -> None:
    done = _run("succeeded") | {
        "completed_at": "2026-01-15T09:31:00Z",
        "records_synced": 3,
        "bytes_synced": 99,
    }
    scripted.extend(
        [
            httpx.Response(502, json={"detail": "upstream"}),
            httpx.Response(200, text="<html>proxy error</html>"),
            httpx.Response(200, json={"run": _run("incomplete")}),
            httpx.Response(200, json={"run": done}),
        ]
    )
    finished = await wait_for_run(_scope(), 5, FAST)
    assert finished.status == "succeeded" and finished.records_synced == 3
