"""Fixtures: a real emulator on a loopback port per test, and httpx clients acting as the default users."""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from splendor_emulator import Emulator, running_emulator

from .helpers import ADMIN, fast_config

ClientFactory = Callable[..., httpx.Client]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with running_emulator(fast_config()) as emulator:
        yield emulator


@pytest.fixture
def client_for(emu: Emulator) -> Iterator[ClientFactory]:
    made: list[httpx.Client] = []

    def make(token: str | None = ADMIN, tenant: str | None = "acme", **kwargs: Any) -> httpx.Client:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if tenant is not None:
            headers["X-Splendor-Tenant-Id"] = tenant
        client = httpx.Client(base_url=emu.base_url, headers=headers, **{"timeout": 10, **kwargs})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def admin(client_for: ClientFactory) -> httpx.Client:
    return client_for(ADMIN)
