"""History-aware polling: few calls, and the end of the run is seen soon after it happens."""

import random
import statistics
from pathlib import Path

import pytest

from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.polling import Expectation, PollOptions, PollPlan, next_delay


def simulate(
    duration: float, expectation: Expectation | None, options: PollOptions = PollOptions()
) -> tuple[int, float]:
    """(refresh calls, detection latency) for a run that ends at `duration` seconds of age."""
    plan = PollPlan(options, expectation)
    age = 0.0
    calls = 0
    while True:
        age += plan.delay(age)
        calls += 1
        if age >= duration:
            return calls, age - duration
        plan.observe("running")


def test_sixty_second_run_with_history_meets_the_targets() -> None:
    rng = random.Random(7)
    results = []
    for _ in range(500):
        history = [60 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(5)]
        actual = 60 * (1 + rng.uniform(-0.1, 0.1))
        results.append(simulate(actual, Expectation.from_durations(history)))
    calls = sorted(c for c, _ in results)
    latency = statistics.median(lat for _, lat in results)
    assert statistics.median(calls) <= 8 and calls[int(0.95 * len(calls))] <= 8
    assert latency < 3.0


def test_without_history_it_backs_off_to_the_cap() -> None:
    options = PollOptions(initial_seconds=1, cap_seconds=30, factor=2)
    plan = PollPlan(options)
    delays = []
    for _ in range(8):
        delays.append(plan.delay(0))
        plan.observe("running")
    assert delays[:3] == [1, 2, 4] and delays[-1] == 30


def test_the_cap_still_bounds_the_sleep_before_a_long_expected_run() -> None:
    plan = PollPlan(PollOptions(cap_seconds=30), Expectation.from_durations([3600]))
    assert plan.delay(0) == 30  # an early failure is still seen within the cap


def test_incomplete_drops_the_window_and_retry_after_is_a_floor() -> None:
    plan = PollPlan(PollOptions(), Expectation.from_durations([60, 61, 59]))
    assert plan.delay(0) > 25
    plan.observe("incomplete")
    assert plan.expectation is None
    assert plan.delay(10) < 5
    assert plan.delay(10, retry_after=7) == 7


def test_expectation_window_contains_the_history() -> None:
    window = Expectation.from_durations([50, 55, 60, 58])
    assert window is not None and window.low <= 50 and window.high >= 60
    single = Expectation.from_durations([100])
    assert single is not None and single.low == 80 and single.high == 120
    assert Expectation.from_durations([]) is None


def test_history_persists_merges_and_keeps_recent_runs(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    first, second = RunHistory(path).load(), RunHistory(path).load()
    for seconds in range(12):
        first.record("acme", "a", float(seconds))
    second.record("acme", "b", 5.0)
    first.save()
    second.save()
    merged = RunHistory(path).load()
    assert merged.durations("acme", "a") == [float(s) for s in range(2, 12)]
    assert merged.durations("acme", "b") == [5.0]
    path.write_text("{not json")
    assert RunHistory(path).load().durations("acme", "a") == []


def test_next_delay_backs_off_to_the_cap() -> None:
    options = PollOptions(initial_seconds=1, cap_seconds=30, factor=2)
    delays = [next_delay(options, n, elapsed=0) for n in range(8)]
    assert delays[:3] == [1, 2, 4] and delays[-1] == 30


def test_next_delay_sleeps_until_near_the_expected_end() -> None:
    options = PollOptions(initial_seconds=1, cap_seconds=30)
    assert next_delay(options, 0, elapsed=0, expected_seconds=20) == pytest.approx(18)
    assert next_delay(options, 3, elapsed=21, expected_seconds=20) == pytest.approx(1.1)
    assert next_delay(options, 0, elapsed=0, expected_seconds=600) == 30  # never beyond the cap
    assert next_delay(PollOptions(), 0, elapsed=0, retry_after=7) == 7
