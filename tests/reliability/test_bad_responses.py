"""Malformed API answers: each becomes one clear, typed error naming the route and what was wrong, after
exactly the attempts the retry rules allow, and no mutating request is ever sent in reaction to it."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from splendor_api import (
    ResponseInvalid,
    RetriesExhausted,
    RetryPolicy,
    SplendorClient,
    SplendorConfig,
    SplendorError,
    Unauthorized,
)

TOKEN = "canary-tok-responses-0001"
HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)
PORTAL = "<!doctype html><html><head><title>Sign in to Guest Wi-Fi</title></head><body>...</body></html>"
RUN = {"run_id": 7, "source_id": 3, "status": "running"}


def answer(status: int, body: str | bytes, content_type: str = "application/json") -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers={"Content-Type": content_type})


Call = Callable[[SplendorClient], Awaitable[Any]]

# (case id, the call, the answer, error class, text the error must contain, attempts expected)
CASES: list[tuple[str, Call, httpx.Response, type[SplendorError], str, int]] = [
    (
        "truncated-json",
        lambda c: c.list_sources(),
        answer(200, '{"sources": [{"source_id": 1, "source_k'),
        ResponseInvalid,
        "not valid JSON",
        1,
    ),
    (
        "captive-portal-html-200",
        lambda c: c.list_providers(),
        answer(200, PORTAL, "text/html"),
        ResponseInvalid,
        "Sign in to Guest Wi-Fi",
        1,
    ),
    (
        "proxy-html-502",
        lambda c: c.get_airbyte_source(3),
        answer(502, HTML_502, "text/html"),
        RetriesExhausted,
        "non-JSON error page: 502 Bad Gateway",
        3,
    ),
    (
        "missing-status",
        lambda c: c.refresh_run(7),
        answer(200, '{"run": {"run_id": 7, "source_id": 3}}'),
        ResponseInvalid,
        "run.status",
        1,
    ),
    (
        "wrong-type",
        lambda c: c.get_run(7),
        answer(
            200, '{"run": {"run_id": 7, "source_id": 3, "status": "succeeded", "records_synced": "lots"}}'
        ),
        ResponseInvalid,
        "run.records_synced",
        1,
    ),
    (
        "missing-envelope",
        lambda c: c.list_ingest_runs(source_id=3),
        answer(200, '{"items": []}'),
        ResponseInvalid,
        "missing field 'runs'",
        1,
    ),
    ("empty-body", lambda c: c.get_run(7), answer(200, b""), ResponseInvalid, "not valid JSON", 1),
    (
        "array-not-object",
        lambda c: c.get_airbyte_source(3),
        answer(200, "[]"),
        ResponseInvalid,
        "does not match the expected shape",
        1,
    ),
    (
        "not-utf8",
        lambda c: c.list_sources(),
        answer(200, b'{"sources": ["\xff\xfe"]}'),
        ResponseInvalid,
        "not valid JSON",
        1,
    ),
    (
        "401-html-echoing-token",
        lambda c: c.list_sources(),
        answer(401, f"<html><title>Unauthorized</title>bad token {TOKEN}</html>", "text/html"),
        Unauthorized,
        "HTTP 401",
        1,
    ),
    (
        "huge-error-detail",
        lambda c: c.get_run(7),
        answer(404, '{"detail": "' + "x" * 20_000 + '"}'),
        SplendorError,
        "HTTP 404",
        1,
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "response", "error", "names", "attempts"), CASES, ids=[c[0] for c in CASES]
)
async def test_malformed_answers(
    case: str,
    call: Call,
    response: httpx.Response,
    error: type[SplendorError],
    names: str,
    attempts: int,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(response.status_code, content=response.content, headers=response.headers)

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    config = SplendorConfig(
        api_base="https://splendor.test", tenant_id="acme", token=TOKEN, max_attempts=3, max_retry_seconds=60
    )
    client = SplendorClient(
        config, transport=httpx.MockTransport(handler), retry_policy=RetryPolicy(sleep=no_sleep)
    )
    async with client:
        with pytest.raises(error) as caught:
            await call(client)
    text = str(caught.value)
    assert names in text, text
    assert TOKEN not in text and TOKEN not in repr(caught.value.__dict__)
    assert len(text) < 2_000, "error pages must not be pasted whole into messages"
    assert len(seen) == attempts
    assert {r.method for r in seen} <= {"GET", "POST"}
    assert all(r.url.path == seen[0].url.path for r in seen), "no other call was made in reaction"


async def test_unknown_run_status_fails_closed(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A status the contract does not list stops the pipeline's poll step with a clear error."""
    from splendor_flows.engine.errors import PermanentStepError
    from splendor_flows.orchestration.runtime import use_runtime
    from splendor_flows.orchestration.scope import Scope
    from splendor_flows.tasks.sync import poll_run

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"run": {**RUN, "status": "exploded"}})

    scope = Scope(
        api_base="http://splendor.test", tenant="acme", source_key="status-probe", sync_id="unknown-status"
    )
    with use_runtime(transport=httpx.MockTransport(handler)), pytest.raises(PermanentStepError) as caught:
        await poll_run(scope, 7)
    assert "unknown status 'exploded'" in str(caught.value)
    assert "[poll] source 'status-probe'" in str(caught.value)


async def test_unknown_ingest_status_fails_closed(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from splendor_flows.engine.errors import PermanentStepError
    from splendor_flows.orchestration.runtime import use_runtime
    from splendor_flows.orchestration.scope import Scope
    from splendor_flows.tasks.ingest import await_ingest_ready

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "ingest_run_id": "ing_1",
                "tenant_id": "acme",
                "dataset_id": "d",
                "source_id": 3,
                "status": "teleported",
            },
        )

    scope = Scope(
        api_base="http://splendor.test", tenant="acme", source_key="ingest-probe", sync_id="unknown-ingest"
    )
    with use_runtime(transport=httpx.MockTransport(handler)), pytest.raises(PermanentStepError) as caught:
        await await_ingest_ready(scope, 7, ["ing_1"])
    assert "unknown status 'teleported'" in str(caught.value)
