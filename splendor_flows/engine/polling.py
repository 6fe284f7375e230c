"""When to ask again: the polling schedule for connector and ingest runs, and when to stop asking.

Fixed clocks (10-60 s in the other orchestrators) either waste calls or see the end late. We back
off from `initial` toward `cap`, and when the expected duration of the run is known (earlier runs of
the same source) we sleep until just before it is expected to finish, then poll tightly.
"""

import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field

from splendor_api import ApiError, ResponseInvalid, RetriesExhausted, SplendorError
from splendor_api.models import RunStatus
from splendor_flows.engine.clock import Clock
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError, resume_hint
from splendor_flows.engine.scope import ScopeLike


class PollOptions(BaseModel):
    """Polling knobs exposed as flow parameters."""

    initial_seconds: float = Field(default=1.0, gt=0, le=60, description="First wait between polls.")
    cap_seconds: float = Field(default=30.0, gt=0, le=600, description="Longest wait between polls.")
    factor: float = Field(default=1.6, ge=1.0, le=4.0, description="Backoff growth per poll.")
    deadline_seconds: float = Field(
        default=6 * 3600, gt=0, le=7 * 24 * 3600, description="Give up waiting after this long."
    )


def backoff(options: PollOptions, steps: int) -> float:
    """The geometric schedule: `initial`, then `factor` times longer each step, never beyond `cap`."""
    return min(options.cap_seconds, options.initial_seconds * options.factor**steps)


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
    delay = backoff(options, polls_done)
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
        if status == RunStatus.INCOMPLETE:
            self.expectation = None

    def _step(self, expected: Expectation) -> float:
        return max(self.options.initial_seconds / 2, (expected.high - expected.low) / WINDOW_POLLS)

    def delay(self, age: float, retry_after: float | None = None) -> float:
        options = self.options
        expected = self.expectation
        if expected is None:
            delay = backoff(options, self.polls)
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


# Unusable answers in a row (not JSON, no `status`...) a wait puts up with. A proxy's error page during
# a blip deserves a few more looks; an API that changed shape will not heal in the hours to the deadline.
MALFORMED_LIMIT = 5

# What to do about an answer that asking again cannot change, by HTTP status.
_PERMANENT_HINTS = {
    401: "the token is missing or expired: renew it (the credentials block or SPLENDOR_TOKEN), then {resume}",
    403: "the token lacks the admin role for tenant {tenant}: use a tenant-admin token, then {resume}",
    404: "it was deleted, or belongs to another tenant: start a new sync (a new sync_id)",
    422: "Splendor rejected the request: the API may have changed; the pipeline stops rather than guess",
}


def retry_after_of(error: SplendorError) -> float | None:
    """The pause the server asked for, also when the client's own retries ran out on it."""
    if isinstance(error, RetriesExhausted) and isinstance(error.last_error, SplendorError):
        return retry_after_of(error.last_error)
    return error.retry_after if isinstance(error, ApiError) else None


def _hopeless(error: SplendorError) -> bool:
    """Whether asking again cannot change the answer (malformed answers are counted instead)."""
    if isinstance(error, ApiError):
        return error.permanent  # 4xx but 429
    # The client's retries ran out on transient failures: the outage may end before the deadline.
    return error.permanent and not isinstance(error, RetriesExhausted | ResponseInvalid)


class PollGuard:
    """The rules every wait shares: when to give up, and how long to pause after a failed request.

    A failed poll *request* says nothing about the run, so transient failures (5xx, 429, dropped
    connections, the client's retries spent) only slow the wait: the pause grows with consecutive
    failures and honours Retry-After, and only the deadline ends the wait. An answer that asking
    again cannot change (401, 403, 404, 422) ends it at once; malformed answers end it after
    MALFORMED_LIMIT in a row.
    """

    def __init__(self, clock: Clock, options: PollOptions, *, step: str, scope: ScopeLike) -> None:
        self.clock = clock
        self.options = options
        self.step = step
        self.scope = scope
        self.began = clock.monotonic()
        self.failures = 0
        self.malformed = 0
        self.retry_after: float | None = None

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.began

    def answered(self) -> None:
        self.failures = self.malformed = 0
        self.retry_after = None

    def failed(self, error: SplendorError, subject: str) -> None:
        """Count a failed request about `subject` ("run 5"), or raise when waiting on is pointless."""
        resume = resume_hint(self.scope.sync_id)
        if isinstance(error, ResponseInvalid):
            self.malformed += 1
            if self.malformed >= MALFORMED_LIMIT:
                raise PermanentStepError(
                    self.step,
                    self.scope.source_key,
                    f"{subject}: {self.malformed} unusable answers in a row, the last: {error}",
                    f"the API may have changed; the pipeline stops rather than guess. {resume}",
                ) from error
        elif _hopeless(error):
            status = error.status if isinstance(error, ApiError) else None
            hint = _PERMANENT_HINTS.get(status or 0, "{resume}")
            hint = hint.format(resume=resume, tenant=self.scope.tenant)
            what = f"{subject} no longer exists" if status == 404 else f"{subject}: polling stopped"
            raise PermanentStepError(self.step, self.scope.source_key, f"{what} ({error})", hint) from error
        self.failures += 1
        self.retry_after = retry_after_of(error)

    def check_deadline(self, late: str) -> None:
        """Raise once the wait has lasted longer than the deadline; `late` says what is not done yet."""
        deadline = self.options.deadline_seconds
        if self.elapsed() > deadline:
            raise DeadlineExceeded(
                self.step,
                self.scope.source_key,
                f"{late} after {deadline:.0f} s",
                f"it goes on in Splendor; {resume_hint(self.scope.sync_id)} to keep waiting",
            )

    def pause_after(self, planned: float) -> float:
        """The pause before the next request: the plan's after an answer, a growing one after failures."""
        if not self.failures:
            return planned
        delay = backoff(self.options, self.failures - 1)
        return max(delay, self.retry_after) if self.retry_after is not None else delay
