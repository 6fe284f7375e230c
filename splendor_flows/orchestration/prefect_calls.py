"""How this project's own Prefect API calls (start records, source slots) are sent: bounded, and a busy
database asked again soon.

Bounded: Prefect's client pools 16 connections and keeps 8 alive. A fleet asking for hundreds of records
or slots at once queued hundreds of requests inside that pool, whose bookkeeping grows with the square of
its queue (a fifth of a 200-source shard's CPU when measured), and a SQLite-backed server answered the
burst of write transactions with 503. The calls wait here instead, on one semaphore per event loop.

Asked again soon: a SQLite-backed server answers 503 to a write that read first and met another write
("database is locked"; a variable's update does that), and it holds for milliseconds. Prefect's client
waits 2 s, then 4 s, ... before it asks again, holding one of the slots above meanwhile: measured on a
200-source fleet, 33 to 45 such waits made the fleet 1.6 to 1.8 times slower than the bare script. So a
call is first sent with Prefect's retries off and a 503 is asked again after tens of milliseconds, with
the slot given back while it waits. Anything else Prefect would retry (a dropped connection, a 502, a
429), or a 503 that outlasts those quick tries, goes to Prefect's own retries, which ride out an outage.
"""

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.context import SettingsContext, get_settings_context
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, Settings

T = TypeVar("T")

CALLS_AT_ONCE = 8
# Waits before each quick retry of a 503 (± 50 % jitter): about 1.5 s in all, then Prefect's retries.
BUSY_RETRY_SECONDS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)
# The settings in force, and the same with Prefect's retries off (made once, not per call: a copy of
# Prefect's settings costs about a millisecond).
_no_retries: tuple[Settings, Settings] | None = None


def _slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(CALLS_AT_ONCE)
    return slots


def _without_retries() -> SettingsContext:
    global _no_retries
    context = get_settings_context()
    if _no_retries is None or _no_retries[0] is not context.settings:
        updated = context.settings.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0})
        _no_retries = (context.settings, updated)
    return SettingsContext(profile=context.profile, settings=_no_retries[1])


async def prefect_call(call: Callable[[PrefectClient], Awaitable[T]]) -> T:
    """`call`'s answer, sent once one of this loop's `CALLS_AT_ONCE` slots is free.

    Raises what the call raises, as Prefect's client would have after its own retries.
    """
    slots = _slots()
    for pause in BUSY_RETRY_SECONDS:
        async with slots:
            try:
                with _without_retries():
                    async with get_client() as client:
                        return await call(client)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 503:
                    if exc.response.status_code not in (408, 429, 502):
                        raise
                    break
            except httpx.TransportError:
                break
        await asyncio.sleep(pause * (0.5 + random.random()))
    async with slots, get_client() as client:
        return await call(client)
