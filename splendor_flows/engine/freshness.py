"""When a source is stale: the freshness rule `splendor-flows status`, the `tenant-status` deployment and
the staleness automation share.

A source's freshness window comes from its schedule where it has one: twice the schedule's interval, so
one missed or failed run is tolerated and two in a row are not. A source without a schedule gets the
staleness automation's threshold (the `within` of `splendor-source-freshness` in
deployments/automations.yaml), the only window that automation knows. Age is measured from the end of the
last successful sync run, the moment the automation's `splendor.sync.succeeded` marks, and a source is
stale once its age is strictly greater than its window.

A cron's interval is the longest gap between consecutive fires in the week after `now`: a weekday cron
("0 9 * * 1-5") has a 72 h interval over the weekend, and a business-hours cron ("*/5 9-17 * * *") has
the overnight gap, so neither is called stale on a quiet night. Sources sharing a cron share the answer
(`IntervalCache`), so a tenant of a thousand sources on a few crons computes a few intervals.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

FRESHNESS_AUTOMATION = "splendor-source-freshness"
# Runs a window allows: one missed run is normal life (a slow provider, a retry), two are not.
INTERVALS_PER_WINDOW = 2
# How far ahead a cron's fires are read to find its longest gap: a week covers weekday and
# business-hours crons; the cap keeps a every-minute cron cheap (4,000 fires is almost three days,
# enough to include any nightly pause).
INTERVAL_HORIZON = timedelta(days=7)
MAX_FIRES_READ = 4000


class FreshnessError(ValueError):
    """A schedule or an automation file the rule cannot read; says which field and what is allowed."""


def automation_threshold(automations: list[dict[str, Any]]) -> float:
    """The staleness automation's window in seconds (its trigger's `within`), from the automations file's
    content: what the rule falls back to, so that a source without a schedule is stale exactly when the
    automation fires for it."""
    for automation in automations:
        if automation.get("name") != FRESHNESS_AUTOMATION:
            continue
        within = (automation.get("trigger") or {}).get("within")
        if isinstance(within, bool) or not isinstance(within, int | float) or within <= 0:
            raise FreshnessError(
                f"automation {FRESHNESS_AUTOMATION}: field trigger.within must be a number of seconds > 0"
            )
        return float(within)
    raise FreshnessError(f"the automations file has no automation named {FRESHNESS_AUTOMATION}")


def _zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise FreshnessError(f"schedule timezone {timezone!r} is not an IANA time zone") from None


def _fires(cron: str, timezone: str | None, after: datetime) -> CronSim:
    try:
        return CronSim(cron, after.astimezone(_zone(timezone)))
    except CronSimError:
        raise FreshnessError(f"schedule cron {cron!r} is not a valid cron expression") from None


def next_fire(cron: str, timezone: str | None, now: datetime) -> datetime | None:
    """The schedule's next fire strictly after `now`, in UTC (None for a cron that never fires again)."""
    fire = next(_fires(cron, timezone, now), None)
    return fire.astimezone(UTC) if fire is not None else None


def schedule_interval(cron: str, timezone: str | None, now: datetime) -> timedelta | None:
    """The longest gap between consecutive fires in the week after `now` (at least two fires read);
    None for a cron that fires fewer than twice from now on."""
    horizon = now + INTERVAL_HORIZON
    previous: datetime | None = None
    longest: timedelta | None = None
    for count, local in enumerate(_fires(cron, timezone, now)):
        # In UTC: two times of one zone subtract as wall-clock times, which would hide a DST hour.
        fire = local.astimezone(UTC)
        if previous is not None:
            gap = fire - previous
            longest = gap if longest is None or gap > longest else longest
            if fire > horizon or count >= MAX_FIRES_READ:
                break
        previous = fire
    return longest


@dataclass(frozen=True)
class Window:
    seconds: float
    # Where the window comes from: "2 x 1h schedule interval" or "automation threshold".
    basis: str


def _human(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass
class IntervalCache:
    """Intervals by (cron, time zone) for one `now`: one computation per distinct schedule."""

    now: datetime
    _known: dict[tuple[str, str | None], timedelta | None] = field(default_factory=dict)

    def interval(self, cron: str, timezone: str | None) -> timedelta | None:
        key = (cron, timezone)
        if key not in self._known:
            self._known[key] = schedule_interval(cron, timezone, self.now)
        return self._known[key]


def freshness_window(
    cron: str | None, timezone: str | None, threshold_seconds: float, intervals: IntervalCache
) -> Window:
    """The source's window: twice its schedule's interval when it has a schedule (`cron`), else the
    staleness automation's threshold."""
    if cron:
        interval = intervals.interval(cron, timezone)
        if interval is not None:
            seconds = INTERVALS_PER_WINDOW * interval.total_seconds()
            return Window(seconds, f"{INTERVALS_PER_WINDOW} x {_human(interval.total_seconds())} schedule")
    return Window(threshold_seconds, "automation threshold")


def is_stale(last_success: datetime | None, since: datetime | None, window: Window, now: datetime) -> bool:
    """Stale: the last successful sync ended more than `window` ago. A source never synced is stale once
    it has existed (`since`) longer than its window; one of unknown age is stale."""
    anchor = last_success or since
    if anchor is None:
        return True
    return (now - anchor).total_seconds() > window.seconds
