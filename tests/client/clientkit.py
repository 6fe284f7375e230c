"""Helpers shared by the client unit tests: a scripted mock API, a fake clock, a canary token."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from splendor_api import SplendorClient, SplendorConfig

CANARY = "canary-tok-XXXX"
API_BASE = "https://splendor.test"
FIXTURES = Path(__file__).parent.parent / "contract" / "fixtures"

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class FakeClock:
    """Monotonic time that advances only when something sleeps on it: retries without real waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request it saw."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        result = answer(request)
        if isinstance(result, httpx.Response):
            return result
        return await result

    @property
    def count(self) -> int:
        return len(self.requests)


def make_config(**overrides: Any) -> SplendorConfig:
    values: dict[str, Any] = {"api_base": API_BASE, "tenant_id": "acme", "token": CANARY}
    values.update(overrides)
    return SplendorConfig(**values)


ClientFactory = Callable[..., SplendorClient]
