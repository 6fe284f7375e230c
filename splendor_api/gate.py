"""A gate shared by every client of one process that talks to the same API.

The fleet runs hundreds of pipelines in one process. When the API sheds load (503/429 with Retry-After),
every pipeline should pause, not only the one that happened to see the answer: otherwise the others keep
the backend saturated and each collects its own 503s.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable


class RateGate:
    """Closes until a moment the server named, and bounds in-flight requests.

    Safe for concurrent use by many tasks of one event loop; sharing it across loops is not supported
    (asyncio primitives bind to the loop that first waits on them).
    """

    def __init__(
        self,
        max_concurrency: int = 32,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self._clock = clock
        self._sleep = sleep
        self._slots = asyncio.Semaphore(max_concurrency)
        self._reopens_at = 0.0
        self._in_flight = 0

    def __repr__(self) -> str:
        return (
            f"RateGate(max_concurrency={self.max_concurrency}, in_flight={self._in_flight}, "
            f"closed_for={self.closed_for():.2f}s)"
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def closed_for(self) -> float:
        """Seconds until the gate reopens (0 when open)."""
        return max(0.0, self._reopens_at - self._clock())

    def close_for(self, seconds: float) -> None:
        """Hold every request back for ``seconds``; a later reopening moment already set is kept."""
        if seconds > 0:
            self._reopens_at = max(self._reopens_at, self._clock() + seconds)

    async def wait_open(self) -> None:
        # Loop: another response may push the reopening moment further while we sleep.
        while (delay := self.closed_for()) > 0:
            await self._sleep(delay)

    @contextlib.asynccontextmanager
    async def slot(self, *, honour_pause: bool = True) -> AsyncIterator[None]:
        """Hold one in-flight slot for the duration of a request, after the gate is open."""
        async with self._slots:
            if honour_pause:
                await self.wait_open()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
