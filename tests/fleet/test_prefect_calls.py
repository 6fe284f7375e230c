"""The project's own Prefect calls: a busy database (503) is asked again within milliseconds, with the
call's slot given back meanwhile; answers that are not about load are raised at once."""

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

from splendor_flows.orchestration import prefect_calls
from splendor_flows.orchestration.prefect_calls import CALLS_AT_ONCE, prefect_call


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("PATCH", "http://prefect.test/api/variables/name/x")
    return httpx.HTTPStatusError(str(code), request=request, response=httpx.Response(code, request=request))


async def test_a_busy_answer_is_asked_again_soon_without_holding_a_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Long enough pauses that the other calls below all start within the first one.
    monkeypatch.setattr(prefect_calls, "BUSY_RETRY_SECONDS", (0.4, 0.02, 0.02))
    # The pauses the call itself asks for, not wall-clock gaps (a loaded machine stretches those).
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    def recorded_sleep(delay: float) -> Coroutine[Any, Any, None]:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        if caller is not None and caller.f_globals.get("__name__") == prefect_calls.__name__:
            pauses.append(delay)
        return real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    tries: list[int] = []
    others_done = asyncio.Event()

    async def busy_twice(client: PrefectClient) -> str:
        # Prefect's own retries are off for the quick tries: its 2 s backoff is what this avoids.
        tries.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(tries) < 3:
            raise _status(503)
        return "written"

    running = [0, 0]  # now, peak

    async def other(client: PrefectClient) -> None:
        running[0] += 1
        running[1] = max(running[1], running[0])
        await asyncio.sleep(0.1)
        running[0] -= 1

    async def others() -> None:
        # While the busy call waits to ask again, every slot is free for the other calls.
        await asyncio.sleep(0.01)
        await asyncio.gather(*(prefect_call(other) for _ in range(CALLS_AT_ONCE)))
        others_done.set()

    answer, _ = await asyncio.gather(prefect_call(busy_twice), others())
    assert answer == "written"
    assert tries == [0, 0, 0]
    # Asked again after the pauses above, not Prefect's (its first retry waits at least 1.6 s).
    # (each jittered to between half and one and a half times its step)
    assert len(pauses) == 2
    assert 0.2 <= pauses[0] <= 0.6
    assert 0.01 <= pauses[1] <= 0.03
    assert others_done.is_set()
    assert running[1] == CALLS_AT_ONCE, "the busy call kept its slot while it waited to ask again"


@pytest.mark.parametrize("code", [404, 409, 423])
async def test_an_answer_about_the_request_is_raised_at_once(code: int) -> None:
    tries = 0

    async def refused(client: PrefectClient) -> None:
        nonlocal tries
        tries += 1
        raise _status(code)

    with pytest.raises(httpx.HTTPStatusError) as raised:
        await prefect_call(refused)
    assert raised.value.response.status_code == code
    assert tries == 1


async def test_a_database_busy_past_the_quick_tries_goes_to_prefects_own_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prefect_calls, "BUSY_RETRY_SECONDS", (0.0, 0.0))
    retries: list[int] = []

    async def busy_then_done(client: PrefectClient) -> str:
        retries.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(retries) <= 2:
            raise _status(503)
        return "written"

    assert await prefect_call(busy_then_done) == "written"
    # Two quick tries without Prefect's retries, then one call with them (an outage is ridden out).
    assert retries[:2] == [0, 0] and retries[2] > 0


async def test_a_dropped_connection_goes_to_prefects_own_retries() -> None:
    retries: list[int] = []

    async def dropped_once(client: PrefectClient) -> str:
        retries.append(PREFECT_CLIENT_MAX_RETRIES.value())
        if len(retries) == 1:
            raise httpx.ReadError("connection reset")
        return "read"

    assert await prefect_call(dropped_once) == "read"
    assert retries[0] == 0 and retries[1] > 0
