"""How many Prefect API calls of this project's own (start records, source slots) one process sends at once.

Prefect's client pools 16 connections and keeps 8 alive. A fleet asking for hundreds of records or slots
at once queued hundreds of requests inside that pool, whose bookkeeping grows with the square of its
queue (a fifth of a 200-source shard's CPU when measured), and a SQLite-backed server answered the
burst of write transactions with 503. The calls wait here instead, on one semaphore per event loop.
"""

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from prefect import get_client
from prefect.client.orchestration import PrefectClient

CALLS_AT_ONCE = 8
_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def prefect_call() -> AsyncIterator[PrefectClient]:
    """A Prefect client for one call, once one of this loop's `CALLS_AT_ONCE` slots is free."""
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(CALLS_AT_ONCE)
    async with slots, get_client() as client:
        yield client
