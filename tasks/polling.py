"""When to ask again: the polling schedule for connector and ingest runs.

Fixed clocks (10-60 s in the other orchestrators) either waste calls or see the end late. We back
off from `initial` toward `cap`, and when the expected duration of the run is known (earlier runs of
the same source) we sleep until just before it is expected to finish, then poll tightly.
"""

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
