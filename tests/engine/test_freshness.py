"""The freshness rule: twice a schedule's interval where a source has a schedule, else the staleness
automation's threshold; stale strictly past the window."""

from datetime import UTC, datetime, timedelta

import pytest

from splendor_flows.engine.freshness import (
    FRESHNESS_AUTOMATION,
    FreshnessError,
    IntervalCache,
    Window,
    automation_threshold,
    freshness_window,
    is_stale,
    next_fire,
    schedule_interval,
)
from splendor_flows.orchestration.automations import load

# A Saturday noon.
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_an_hourly_schedule_gets_a_two_hour_window() -> None:
    window = freshness_window("0 * * * *", "UTC", 93600, IntervalCache(NOW))
    assert window.seconds == 7200
    assert window.basis == "2 x 1h schedule"


def test_a_weekday_cron_counts_the_weekend_gap() -> None:
    # Friday 09:00 to Monday 09:00: 72 h, so Monday morning is not stale before the run.
    assert schedule_interval("0 9 * * 1-5", "UTC", NOW) == timedelta(hours=72)


def test_a_business_hours_cron_counts_the_night() -> None:
    # */5 from 09:00 to 17:55, then nothing until 09:00: a 15 h 5 min gap.
    assert schedule_interval("*/5 9-17 * * *", "UTC", NOW) == timedelta(hours=15, minutes=5)


def test_the_interval_is_read_in_the_schedule_time_zone() -> None:
    # Paris leaves summer time on 2026-10-25: 09:00 that day comes 25 h after 09:00 the day before.
    autumn = datetime(2026, 10, 22, tzinfo=UTC)
    assert schedule_interval("0 9 * * *", "Europe/Paris", autumn) == timedelta(hours=25)
    assert schedule_interval("0 9 * * *", "UTC", autumn) == timedelta(hours=24)
    assert next_fire("0 9 * * *", "Europe/Paris", NOW) == datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def test_without_a_schedule_the_window_is_the_automation_threshold() -> None:
    assert freshness_window(None, None, 93600, IntervalCache(NOW)) == Window(93600, "automation threshold")


def test_the_threshold_is_the_freshness_automation_window_in_the_file() -> None:
    automations = load()
    [freshness] = [a for a in automations if a["name"] == FRESHNESS_AUTOMATION]
    assert automation_threshold(automations) == float(freshness["trigger"]["within"])
    # The file's own value, not a constant that happens to match it.
    freshness["trigger"]["within"] = 3600
    assert automation_threshold(automations) == 3600.0


def test_a_missing_or_bad_threshold_names_the_automation_and_field() -> None:
    with pytest.raises(FreshnessError, match=f"no automation named {FRESHNESS_AUTOMATION}"):
        automation_threshold([{"name": "other", "trigger": {"within": 10}}])
    with pytest.raises(FreshnessError, match=r"field trigger\.within must be a number of seconds > 0"):
        automation_threshold([{"name": FRESHNESS_AUTOMATION, "trigger": {"within": "soon"}}])


def test_a_bad_cron_or_time_zone_names_the_field() -> None:
    with pytest.raises(FreshnessError, match="schedule cron 'every hour' is not a valid cron expression"):
        schedule_interval("every hour", "UTC", NOW)
    with pytest.raises(FreshnessError, match="schedule timezone 'Mars/Base' is not an IANA time zone"):
        schedule_interval("0 * * * *", "Mars/Base", NOW)


def test_stale_strictly_past_the_window() -> None:
    window = Window(7200, "2 x 1h schedule")
    at_edge = NOW - timedelta(seconds=7200)
    assert not is_stale(at_edge, None, window, NOW)
    assert is_stale(at_edge - timedelta(seconds=1), None, window, NOW)
    assert not is_stale(NOW - timedelta(hours=1), None, window, NOW)


def test_a_source_never_synced_is_stale_once_older_than_its_window() -> None:
    window = Window(7200, "2 x 1h schedule")
    assert not is_stale(None, NOW - timedelta(hours=1), window, NOW)
    assert is_stale(None, NOW - timedelta(hours=3), window, NOW)
    assert is_stale(None, None, window, NOW)


def test_sources_sharing_a_cron_share_one_computation() -> None:
    cache = IntervalCache(NOW)
    first = cache.interval("0 * * * *", "UTC")
    assert cache.interval("0 * * * *", "UTC") is first
    assert len(cache._known) == 1
