"""When to ask again: the polling schedule for connector and ingest runs.

Fixed clocks (10-60 s in the other orchestrators) either waste calls or see the end late. We back
off from `initial` toward `cap`, and when the expected duration of the run is known (earlier runs of
the same source) we sleep until just before it is expected to finish, then poll tightly.
"""

import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field


class PollOptions(BaseModel):
    """Polling knobs exposed as flow parameters."""

    initial_seconds: float = Field(default=1.0, gt=0, le=60, description="First wait between polls.")
    cap_seconds: float = Field(default=30.0, gt=0, le=600, description="Longest wait between polls.")
    factor: float = Field(default=1.6, ge=1.0, le=4.0, description="Backoff growth per poll.")
    deadline_seconds: float = Field(
        default=6 * 3600, gt=0, le=7 * 24 * 3600, description="Give up waiting after this long."
    )


def next_delay(
    options: PollOptions,
    polls_done: int,
    elapsed: float,
    expected_seconds: float | None = None,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before the next poll.

    `elapsed` is the run's age (from its own `created_at` when known), so a resumed poller that
    attaches to a long-running run does not restart the backoff from scratch.
    """
    backoff = min(options.cap_seconds, options.initial_seconds * options.factor**polls_done)
    delay = backoff
    if expected_seconds is not None and expected_seconds > 0:
        remaining = expected_seconds - elapsed
        if remaining > options.initial_seconds:
            # Aim slightly early: durations vary, and a poll just after the end beats one long after.
            delay = min(options.cap_seconds, max(options.initial_seconds, remaining * 0.9))
        else:
            # Past the expected end: poll tightly, slowly easing off if the run overruns a lot.
            overrun = max(0.0, -remaining)
            delay = min(options.cap_seconds, options.initial_seconds + overrun * 0.1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class Expectation(BaseModel):
    """When a run is likely to finish, from earlier durations of the same source (seconds of age)."""

    median: float = Field(ge=0)
    low: float = Field(ge=0, description="Start of the window the run most likely ends in.")
    high: float = Field(ge=0, description="End of that window.")
    samples: int = Field(default=0, ge=0)

    @classmethod
    def from_durations(cls, durations: Sequence[float]) -> "Expectation | None":
        """A window around the recent durations: their range, widened by their spread and a margin.

        Durations drift (data grows, the provider slows), so the window is never narrower than a
        few percent of the median, and a single sample gets ±10 %.
        """
        values = sorted(d for d in durations if d >= 0)
        if not values:
            return None
        median = statistics.median(values)
        if len(values) == 1:
            spread = 0.10 * median
        else:
            mad = statistics.median(abs(v - median) for v in values)
            spread = max(1.4826 * mad, 0.03 * median)
        margin = max(0.5, 2 * spread)
        low = max(0.0, min(values[0], median - margin))
        high = max(values[-1], median + margin)
        return cls(median=median, low=low, high=high, samples=len(values))


# Polls spent inside the expected window: more means lower detection latency and more calls.
WINDOW_POLLS = 4


class PollPlan:
    """Schedules the polls of one run from its age, its expected window and the answers so far.

    Without an expectation it backs off geometrically (like `next_delay`). With one it sleeps until
    the window opens (never longer than the cap, so an early failure is still seen), polls at an
    even pace through the window, and backs off again once the run outlives it. A run that turns
    `incomplete` (Airbyte retrying an attempt) will overrun, so the window is dropped.
    """

    def __init__(self, options: PollOptions, expectation: Expectation | None = None) -> None:
        self.options = options
        self.expectation = expectation
        self.polls = 0
        self._late_polls = 0

    def observe(self, status: str) -> None:
        self.polls += 1
        if status == "incomplete":
            self.expectation = None

    def _step(self, expected: Expectation) -> float:
        return max(self.options.initial_seconds / 2, (expected.high - expected.low) / WINDOW_POLLS)

    def delay(self, age: float, retry_after: float | None = None) -> float:
        options = self.options
        expected = self.expectation
        if expected is None:
            delay = min(options.cap_seconds, options.initial_seconds * options.factor**self.polls)
        elif age < expected.low:
            delay = min(options.cap_seconds, expected.low - age)
        elif age < expected.high:
            delay = min(self._step(expected), expected.high - age + options.initial_seconds / 2)
        else:
            # Outlived the window: keep the in-window pace for a moment, then back off.
            delay = min(options.cap_seconds, self._step(expected) * options.factor**self._late_polls)
            self._late_polls += 1
        if retry_after is not None:
            delay = max(delay, retry_after)
        return max(0.05, delay)
