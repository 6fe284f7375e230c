"""When to resend a request and how long to wait first.

Backoff is exponential with full jitter (a uniformly random wait between 0 and the exponential ceiling), so
many pipelines that failed together do not come back together. A server's ``Retry-After`` is a floor:
the docs say to wait at least that long on 503.
"""

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .errors import ApiError

# Statuses worth another attempt. On MUTATING routes only load shedding is: see is_load_shedding.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses Splendor sheds load with; with a Retry-After they pause every client that shares the gate.
SHED_STATUSES = frozenset({429, 503})


def is_load_shedding(error: ApiError) -> bool:
    """The server refused the request before running it, so even a mutating call is safe to resend.

    The docs promise 503 *with* Retry-After for shedding. A bare 503 can come from a proxy or load
    balancer after it forwarded the request (an upstream timeout), so it proves nothing about whether
    the call was applied. 429 is a refusal by definition, with or without the header.
    """
    return error.status == 429 or (error.status == 503 and error.retry_after is not None)


# Transport failures that happen before a single byte of the request left: safe to resend anything.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures after sending (or possibly after): the server may have acted on the request.
AFTER_SEND_ERRORS: tuple[type[Exception], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.CloseError,
    httpx.ProxyError,
    httpx.NetworkError,
    httpx.TimeoutException,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Wait parameters and the clocks they run on (injectable so tests need not sleep)."""

    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    # Longest Retry-After honoured; a misconfigured server asking for an hour should not stall a pipeline.
    retry_after_cap: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    jitter: Callable[[], float] = field(default=random.random)

    def backoff(self, attempt: int) -> float:
        """Full-jitter wait after the ``attempt``-th failure (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** max(0, attempt - 1))
        return ceiling * self.jitter()

    def wait_after(self, attempt: int, error: BaseException | None) -> float:
        wait = self.backoff(attempt)
        if isinstance(error, ApiError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.retry_after_cap))
        return wait

    def parse_retry_after(self, value: str | None) -> float | None:
        """Seconds to wait per a Retry-After header (delta-seconds or HTTP date); None if absent/invalid."""
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if moment.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means the zone was omitted
                return None
            seconds = moment.timestamp() - self.wall_clock()
        if seconds != seconds:  # NaN
            return None
        return min(max(0.0, seconds), self.retry_after_cap)


def is_retryable(error: BaseException) -> bool:
    """Failures that another attempt may cure (after the caller ruled out unsafe resends)."""
    if isinstance(error, ApiError):
        return error.status in RETRY_STATUSES
    return isinstance(error, NOT_SENT_ERRORS + AFTER_SEND_ERRORS)
