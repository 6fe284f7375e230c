"""Fleet tests reuse the flow-test harness: the same Prefect test server and emulator fixtures."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from splendor_flows.orchestration.runtime import use_runtime
from tests.flows.conftest import (  # noqa: F401  (re-exported fixtures)
    emulator,
    prefect_harness,
    source_key,
    splendor_env,
    stripe_secret,
)


@pytest.fixture(autouse=True)
def run_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run-history.json"
    monkeypatch.setenv("SPLENDOR_RUN_HISTORY", str(path))
    return path


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real transport, noting when each request went out and came back, and the peak in flight."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.in_flight = 0
        self.peak = 0
        self.log: list[tuple[float, float, str, int]] = []  # (sent, answered, "METHOD path", status)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        sent = time.monotonic()
        try:
            response = await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1
        self.log.append(
            (sent, time.monotonic(), f"{request.method} {request.url.path}", response.status_code)
        )
        return response


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingTransport]:
    transport = RecordingTransport()
    with use_runtime(transport=transport):
        yield transport
