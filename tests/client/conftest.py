"""Fixtures for client unit tests: clients wired to a mock API and a fake clock."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from clientkit import ClientFactory, FakeClock, Handler, make_config

from splendor_api import RateGate, SplendorClient
from splendor_api.retry import RetryPolicy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_client(clock: FakeClock) -> AsyncIterator[ClientFactory]:
    """Build clients on a mock transport; by default their waits run on the fake clock (no real sleep)."""
    made: list[SplendorClient] = []

    def factory(
        handler: Handler,
        *,
        gate: RateGate | None = None,
        real_time: bool = False,
        **config: Any,
    ) -> SplendorClient:
        policy = RetryPolicy() if real_time else RetryPolicy(sleep=clock.sleep, clock=clock)
        client = SplendorClient(
            make_config(**config),
            transport=httpx.MockTransport(handler),
            gate=gate,
            retry_policy=policy,
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()
