"""The scheduler starts sync-source runs by itself, and the source's own leased slot keeps the syncs of a
source from overlapping although two workers run them at once.

No `prefect deployment run` here: an interval schedule with its own parameters is added to the deployment
of prefect.yaml (as a schedule made in the UI would be), the server's scheduler creates the runs, and
the workers pick them up when they come due. Each run lasts longer than the interval, so every next run
comes due while one is in flight. sync-source has no deployment-wide limit (it would serialise every
source of the tenant): the next run starts, and waits for the source's slot (orchestration/source_lock)
before it starts anything in Splendor.
"""

import time
from datetime import datetime
from typing import Any

import pytest

from tests.stack_harness import StackHarness

from .conftest import call_statuses, connect, demo_spec, emulator_source, seconds, successful_calls, wait_for

# Slow by nature: the runs take real time, one after the other.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCE = "stripe-scheduled"
INTERVAL_SECONDS = 10
# 2 s per attempt plus 3 incomplete (Airbyte-retried) attempts: a Splendor run of about 10.4 s, which with
# the flow run's start and ingestion outlasts the 10 s interval.
INCOMPLETE_ATTEMPTS = 3
# The server's recent-deployments scheduler looks every 5 s: the first slot comes just after its next look.
FIRST_RUN_IN_SECONDS = 6


def test_scheduled_runs_start_by_themselves_and_never_overlap(stack: StackHarness) -> None:
    connect(stack, demo_spec(source_key=SOURCE, source_name="Stripe (scheduled)"))
    # Every run of this source (and only of this source) is slow.
    stack.emulator(
        "POST",
        "/_emulator/faults",
        json={"kind": "run_incomplete", "source_key": SOURCE, "times": INCOMPLETE_ATTEMPTS},
    )
    deployment = stack.deployment("sync-source")
    assert deployment["global_concurrency_limit"] is None, "a deployment-wide limit serialises the tenant"

    scheduled_at = time.time()
    schedule = stack.add_interval_schedule(
        "sync-source",
        INTERVAL_SECONDS,
        # A short poll cap keeps each run close to its Splendor run's length.
        {"source_key": SOURCE, "trigger": "scheduled", "poll": {"cap_seconds": 2}},
        slug=f"e2e-{SOURCE}-every-{INTERVAL_SECONDS}s",
        first_run_in=FIRST_RUN_IN_SECONDS,
    )
    try:
        # Two runs started by the scheduler alone: the first one done, the next one under way.
        wait_for(
            "a second scheduled run to start after the first completed",
            lambda: started_after_a_completed(stack, schedule),
            timeout=120,
            every=0.5,
        )
    finally:
        # Off again, whatever happened: other tests share the deployment and its concurrency slot.
        runs = stack.remove_schedule(schedule)
    run_ids = [r["id"] for r in runs]
    completed = [r for r in runs if r["state_type"] == "COMPLETED"]
    assert len(completed) >= 2, [(r["name"], r["state_name"]) for r in runs]
    assert all(r["auto_scheduled"] for r in runs)
    # Nothing failed: every run the schedule made either completed or was cancelled unstarted at removal.
    assert {r["state_type"] for r in runs} <= {"COMPLETED", "CANCELLED"}

    # Prefect's view: runs of the source did run at once (the next one came due while one ran), so it is
    # the source's slot, not Prefect, that kept their syncs apart.
    histories = {run_id: stack.run_states(run_id) for run_id in run_ids}
    running = [span for run_id in run_ids for span in running_spans(histories[run_id])]
    assert max_overlap(running) >= 2, "no run came due while another ran: runs shorter than the interval"

    # Splendor's view: one sync per completed run, one after the other, and never a start refused
    # because another sync of the source was in flight (a 409 sync_in_progress would mean two pipelines
    # of the source ran at once, even though the second one would then attach instead of starting).
    source_id, splendor_runs = emulator_source(stack, SOURCE)
    starts = call_statuses(stack, source_id, "/sync")
    assert 409 not in starts, starts
    assert len(splendor_runs) == len(completed)
    assert all(r["trigger"] == "scheduled" and r["status"] == "succeeded" for r in splendor_runs)
    splendor_spans = [(seconds(r["created_at"]), seconds(r["completed_at"])) for r in splendor_runs]
    assert max_overlap(splendor_spans) == 1
    assert successful_calls(stack, source_id, "/sync") == len(splendor_runs)
    assert successful_calls(stack, source_id, "/enqueue-ingest") == len(completed)

    # Off means gone: no schedule of that slug is left on the deployment to fire during other tests.
    assert schedule["slug"] not in {s["slug"] for s in stack.deployment("sync-source")["schedules"]}

    first = min(completed, key=lambda r: r["expected_start_time"])
    first_running = seconds(next(s for s in histories[first["id"]] if s["type"] == "RUNNING")["timestamp"])
    late = first_running - seconds(first["expected_start_time"])
    cancelled = sum(r["state_type"] == "CANCELLED" for r in runs)
    lengths = ", ".join(
        f"{end - start:.1f}" for run_id in run_ids for start, end in running_spans(histories[run_id])
    )
    print(
        f"\nschedule every {INTERVAL_SECONDS} s: first run Running {first_running - scheduled_at:.1f} s "
        f"after the schedule was added ({late:.1f} s after its slot); runs completed {len(completed)}, "
        f"cancelled at removal {cancelled}; Running spans {lengths} s; max concurrent: Prefect "
        f"{max_overlap(running)}, Splendor {max_overlap(splendor_spans)}; start-sync statuses {starts}"
    )


def started_after_a_completed(stack: StackHarness, schedule: dict[str, Any]) -> bool:
    runs = stack.schedule_runs(schedule["deployment_id"], schedule["id"])
    states = [r["state_type"] for r in runs]
    return "COMPLETED" in states and ("RUNNING" in states or states.count("COMPLETED") >= 2)


def running_spans(states: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of every stretch the run spent Running; a stretch still open ends now."""
    spans = []
    for state, following in zip(states, [*states[1:], None], strict=True):
        if state["type"] == "RUNNING":
            end = seconds(following["timestamp"]) if following else datetime.now().timestamp()
            spans.append((seconds(state["timestamp"]), end))
    return spans


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one moment (a span ending when another starts does not count)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most
