"""Many small asks of one event loop answered by one call: what a run acting on many sources at once
sends the Prefect server instead of a call per source."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Gathered(Generic[K, R]):
    """Asks made within `window` seconds of the first one (at most `size` of them) go out together as one
    `send(keys)`, which answers each key in order. A failed send fails every ask it carried.

    The window is the price: an ask waits up to `window` for company. A fleet's sources ask within a few
    milliseconds of each other, so a window of tens of milliseconds turns a hundred calls into one or two.
    """

    def __init__(
        self,
        send: Callable[[list[K]], Awaitable[list[R]]],
        *,
        window: float,
        size: int,
        unclaimed: Callable[[K, R], None] | None = None,
    ) -> None:
        """`unclaimed(key, answer)`: told of an answer whose asker stopped waiting (was cancelled), for an
        answer that holds something the asker would have given back."""
        self._send_keys = send
        self._unclaimed = unclaimed
        self.window = window
        self.size = size
        self._waiting: list[tuple[K, asyncio.Future[R]]] = []
        self._flush: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def ask(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if len(self._waiting) >= self.size:
            self._send()
        elif self._flush is None:
            self._flush = asyncio.create_task(self._send_later())
        return await future

    async def _send_later(self) -> None:
        await asyncio.sleep(self.window)
        self._flush = None
        self._send()

    def _send(self) -> None:
        batch, self._waiting = self._waiting[: self.size], self._waiting[self.size :]
        if self._waiting and self._flush is None:
            self._flush = asyncio.create_task(self._send_later())
        if batch:
            task = asyncio.create_task(self._answer(batch))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _answer(self, batch: list[tuple[K, "asyncio.Future[R]"]]) -> None:
        try:
            answers = await self._send_keys([key for key, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (key, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
            elif self._unclaimed is not None:
                self._unclaimed(key, answer)
