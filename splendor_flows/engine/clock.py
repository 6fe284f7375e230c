"""Time as the engine sees it: injected, so tests run hours of polling in milliseconds."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, elapsed time)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime:
        """The current UTC time, to compare with the API's timestamps (a run's age)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)
