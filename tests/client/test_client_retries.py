"""Which failures are resent, how long the client waits, and when it gives up."""

import email.utils
import logging
import time

import httpx
import pytest
from clientkit import ClientFactory, FakeClock, Recorder, fixture

from splendor_api import (
    BadRequest,
    OutcomeUnknown,
    ResponseInvalid,
    RetriesExhausted,
    Unavailable,
    UpstreamError,
    models,
)
from splendor_api.retry import RetryPolicy

SOURCES = fixture("list_sources_response.json")
RUN = fixture("start_sync_pending_response.json")


def ok_sources() -> httpx.Response:
    return httpx.Response(200, json=SOURCES)


async def test_503_with_retry_after_waits_that_long_then_succeeds(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "1"}), ok_sources())
    client = make_client(api, real_time=True)
    started = time.monotonic()
    sources = await client.list_sources()
    assert time.monotonic() - started >= 1.0
    assert api.count == 2
    assert sources[0].source_key == "app-logs"


async def test_always_503_stops_at_the_attempt_bound(make_client: ClientFactory, clock: FakeClock) -> None:
    api = Recorder(httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "2"}))
    client = make_client(api)
    with pytest.raises(RetriesExhausted) as caught:
        await client.list_sources()
    error = caught.value
    assert api.count == 6 == error.attempts
    assert "GET /v1/admin/sources (list_sources)" in str(error)
    assert "gave up after 6 attempt(s)" in str(error)
    assert isinstance(error.last_error, Unavailable)
    assert error.permanent
    # Every wait honoured Retry-After as a floor.
    assert len(clock.sleeps) == 5 and all(s >= 2.0 for s in clock.sleeps)


async def test_time_budget_stops_before_sleeping_past_it(
    make_client: ClientFactory, clock: FakeClock
) -> None:
    api = Recorder(httpx.Response(503, headers={"Retry-After": "60"}))
    client = make_client(api, max_attempts=10, max_retry_seconds=100)
    with pytest.raises(RetriesExhausted) as caught:
        await client.list_sources()
    # 60 s after the first failure fits the 100 s budget; another 60 s would not.
    assert api.count == 2
    assert clock.sleeps == [60.0]
    assert caught.value.elapsed == pytest.approx(60.0)


async def test_retry_after_is_capped(make_client: ClientFactory, clock: FakeClock) -> None:
    api = Recorder(httpx.Response(503, headers={"Retry-After": "3600"}), ok_sources())
    await make_client(api).list_sources()
    assert clock.sleeps == [60.0]


async def test_400_is_tried_once(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(400, json={"detail": "missing tenant header"}))
    with pytest.raises(BadRequest):
        await make_client(api).list_sources()
    assert api.count == 1


async def test_mutating_post_that_times_out_is_sent_once(make_client: ClientFactory) -> None:
    api = Recorder(httpx.ReadTimeout("timed out"))
    client = make_client(api)
    with pytest.raises(OutcomeUnknown) as caught:
        await client.start_sync(12)
    assert api.count == 1
    message = str(caught.value)
    assert "POST /v1/admin/airbyte-sources/12/sync (start_sync)" in message
    assert "Re-read the remote state before retrying" in message
    assert isinstance(caught.value.cause, httpx.ReadTimeout)
    assert caught.value.permanent is False


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_mutating_post_with_server_failure_is_not_resent(
    make_client: ClientFactory, status: int
) -> None:
    api = Recorder(httpx.Response(status, json={"detail": "boom"}))
    with pytest.raises(OutcomeUnknown) as caught:
        await make_client(api).enqueue_ingest(12)
    assert api.count == 1
    assert f"HTTP {status}" in str(caught.value)


async def test_mutating_post_with_dropped_connection_is_not_resent(make_client: ClientFactory) -> None:
    api = Recorder(httpx.RemoteProtocolError("Server disconnected without sending a response."))
    with pytest.raises(OutcomeUnknown):
        await make_client(api).provision(12, {})
    assert api.count == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"}), (429, {})],
    ids=["503-retry-after", "429-retry-after", "429-bare"],
)
async def test_mutating_post_shed_with_503_is_retried(
    make_client: ClientFactory, status: int, headers: dict[str, str]
) -> None:
    api = Recorder(httpx.Response(status, headers=headers), httpx.Response(200, json=RUN))
    run = await make_client(api).start_sync(12)
    assert api.count == 2
    assert run.status == "pending"


@pytest.mark.parametrize("retry_after", [None, "soon"], ids=["no-header", "unparsable-header"])
async def test_mutating_post_with_503_without_retry_after_is_not_resent(
    make_client: ClientFactory, retry_after: str | None
) -> None:
    # Not the documented load shedding: a proxy may answer 503 after forwarding the request.
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    api = Recorder(httpx.Response(503, headers=headers, json={"detail": "upstream timed out"}))
    with pytest.raises(OutcomeUnknown) as caught:
        await make_client(api).start_sync(12)
    assert api.count == 1
    assert "HTTP 503" in str(caught.value) and caught.value.permanent is False


async def test_read_with_503_without_retry_after_is_retried(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(503), httpx.Response(200, json=RUN))
    assert (await make_client(api).refresh_run(5)).run_id == 5
    assert api.count == 2


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("pool")]
)
async def test_mutating_post_never_sent_is_retried(make_client: ClientFactory, error: Exception) -> None:
    api = Recorder(error, httpx.Response(200, json=RUN))
    run = await make_client(api).start_sync(12)
    assert api.count == 2
    assert run.run_id == 5


@pytest.mark.parametrize(
    "error",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.ReadError("connection reset"),
        httpx.ConnectError("refused"),
    ],
)
async def test_get_with_transport_failure_is_retried(make_client: ClientFactory, error: Exception) -> None:
    api = Recorder(error, ok_sources())
    sources = await make_client(api).list_sources()
    assert api.count == 2
    assert len(sources) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_read_post_is_retried_on_server_failure(make_client: ClientFactory, status: int) -> None:
    api = Recorder(httpx.Response(status), httpx.Response(200, json=fixture("refresh_run_response.json")))
    run = await make_client(api).refresh_run(5)
    assert api.count == 2
    assert run.status == "succeeded"


async def test_transport_failures_exhaust_into_retries_exhausted(make_client: ClientFactory) -> None:
    api = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(RetriesExhausted) as caught:
        await make_client(api, max_attempts=3).get_run(5)
    assert api.count == 3
    assert "ConnectError: refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_502_html_page_on_get_is_retried(make_client: ClientFactory) -> None:
    page = httpx.Response(
        502, text="<html><title>502 Bad Gateway</title></html>", headers={"Content-Type": "text/html"}
    )
    api = Recorder(page)
    with pytest.raises(RetriesExhausted) as caught:
        await make_client(api, max_attempts=2).list_sources()
    assert isinstance(caught.value.last_error, UpstreamError)
    assert "502 Bad Gateway" in str(caught.value)


async def test_invalid_response_is_not_retried(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, text="{", headers={"Content-Type": "application/json"}))
    with pytest.raises(ResponseInvalid):
        await make_client(api).list_sources()
    assert api.count == 1


async def test_retries_are_logged_as_warnings(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    api = Recorder(httpx.Response(503, headers={"Retry-After": "3"}), ok_sources())
    with caplog.at_level(logging.WARNING, logger="splendor_api"):
        await make_client(api).list_sources()
    [record] = [r for r in caplog.records if r.name == "splendor_api"]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "GET /v1/admin/sources (list_sources)" in text
    assert "HTTP 503" in text and "attempt 1 of 6" in text and "3.00 s" in text


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    top = RetryPolicy(jitter=lambda: 1.0)
    assert [top.backoff(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    bottom = RetryPolicy(jitter=lambda: 0.0)
    assert bottom.backoff(5) == 0.0
    assert (
        bottom.wait_after(1, Unavailable(status=503, method="GET", path="/", detail=None, retry_after=4.0))
        == 4.0
    )


def test_retry_after_parsing() -> None:
    policy = RetryPolicy(wall_clock=lambda: 1_000_000.0)
    later = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert policy.parse_retry_after("5") == 5.0
    assert policy.parse_retry_after("0.5") == 0.5
    assert policy.parse_retry_after(later) == pytest.approx(30.0)
    assert policy.parse_retry_after(email.utils.formatdate(999_000.0, usegmt=True)) == 0.0
    assert policy.parse_retry_after("9999") == 60.0
    assert policy.parse_retry_after("-3") == 0.0
    for bad in (None, "", "soon", "nan"):
        assert policy.parse_retry_after(bad) is None


async def test_retried_requests_are_rebuilt_identically(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, json=RUN))
    await make_client(api).start_sync(12, trigger="backfill")
    first, second = api.requests
    assert first.content == second.content == b'{"trigger":"backfill"}'
    assert first.headers["Authorization"] == second.headers["Authorization"]


def test_run_status_constants() -> None:
    assert {"succeeded", "failed", "cancelled"} == models.RUN_TERMINAL
    assert {"pending", "running", "incomplete"} == models.RUN_ACTIVE
    assert {"ready"} == models.INGEST_TERMINAL_OK
    assert {"failed", "aborted", "deleted", "superseded"} == models.INGEST_TERMINAL_BAD
