"""A window tick's worker dies between two waves of its sources.

A tick of a window group syncs each source at its own minute (`start_after_seconds`) and waits in its
process between them. Here the worker dies while the tick waits for its second wave, after the first
wave's source was synced and handed to ingestion. Zombie detection marks the tick Crashed, the resume
automation reschedules it, the other worker runs it again: the first source is not synced a second time
(its checkpoint and start record say it is done), the second one is synced at its due time and not
before, each source's run is handed to ingestion once.

A run made by `create_run` rather than by the scheduler: the scheduler's ticks of a window start on the
quarter hour, and Prefect's resume automation reschedules this run as it does every crashed run of the
project (a scheduler's tick is taken up by its group's next tick instead, tests/e2e_stack/
test_stack_tenant.py). What is under test is the tick resuming mid-window, which is the same either way.
"""

import time

import pytest

from tests.stack_harness import StackHarness

from .conftest import (
    ZOMBIE_WITHIN_SECONDS,
    connect,
    demo_spec,
    emulator_source,
    seconds,
    state_after,
    successful_calls,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIRST, SECOND = "stripe-window-first", "stripe-window-second"
# When the second source is due after the tick's expected start: past the first wave's sync and ingest
# on a loaded machine, and before the kill's detection (the zombie window) and the resume would end.
SECOND_DUE_SECONDS = 75


def test_a_tick_killed_between_its_waves_resumes_without_syncing_a_source_twice(stack: StackHarness) -> None:
    for key in (FIRST, SECOND):
        connect(stack, demo_spec(source_key=key, source_name=f"Stripe ({key})"))
    run = stack.create_run(
        "sync-scheduled",
        {"source_keys": [FIRST, SECOND], "start_after_seconds": {SECOND: SECOND_DUE_SECONDS}},
    )
    run_id = run["id"]
    expected_start = seconds(stack.read_run(run_id)["expected_start_time"])
    second_due = expected_start + SECOND_DUE_SECONDS

    first_id, _ = emulator_source(stack, FIRST)
    # The first wave is over: its run succeeded and was handed to ingestion.
    wait_for(
        "the first wave's source to be synced and enqueued",
        lambda: successful_calls(stack, first_id, "/enqueue-ingest") == 1,
        timeout=SECOND_DUE_SECONDS - 15,
        every=0.5,
    )
    victim = wait_for("the tick's worker", lambda: stack.worker_running(stack.read_run(run_id)), 10)
    killed_at = time.time()
    assert killed_at < second_due - 5, "the first wave ended too late to kill the tick between its waves"
    second_id, second_runs = emulator_source(stack, SECOND)
    assert second_runs == [], "the second source was synced before its due time"
    victim.kill_tree()  # the worker and the tick's process: the machine is gone
    try:
        crashed = wait_for(
            "Crashed",
            lambda: state_after(stack, run_id, "CRASHED", killed_at),
            ZOMBIE_WITHIN_SECONDS + 40,
        )
        resumed = wait_for(
            "the tick to run again",
            lambda: state_after(stack, run_id, "RUNNING", seconds(crashed["timestamp"])),
            90,
        )
        done = stack.wait_run(run_id, timeout=180)
    finally:
        stack.restart_worker(victim)

    assert done["state"]["type"] == "COMPLETED", (done["state"]["name"], done["state"]["message"])
    assert done["run_count"] == 2
    _, first_runs = emulator_source(stack, FIRST)
    _, second_runs = emulator_source(stack, SECOND)
    # One Splendor run each: the resumed tick did not sync the first source again.
    assert [r["status"] for r in first_runs] == ["succeeded"], first_runs
    assert [r["status"] for r in second_runs] == ["succeeded"], second_runs
    assert successful_calls(stack, first_id, "/sync") == 1
    assert successful_calls(stack, second_id, "/sync") == 1
    assert successful_calls(stack, first_id, "/enqueue-ingest") == 1
    assert successful_calls(stack, second_id, "/enqueue-ingest") == 1
    # Due at its minute, counted from the tick's expected start, which the reschedule kept: not before,
    # and not a whole offset after the resume either (as counting from the resumed run's start would).
    second_created = seconds(second_runs[0]["created_at"])
    resumed_at = seconds(resumed["timestamp"])
    assert second_due - 1 <= second_created <= max(second_due, resumed_at) + 15, (
        f"created at +{second_created - expected_start:.1f} s, due at +{SECOND_DUE_SECONDS} s, "
        f"resumed at +{resumed_at - expected_start:.1f} s"
    )
    print(
        f"\nkilled {killed_at - expected_start:.1f} s into the window; Crashed "
        f"{seconds(crashed['timestamp']) - killed_at:.1f} s after the kill; second source due at "
        f"+{SECOND_DUE_SECONDS} s, its run created at +{second_created - expected_start:.1f} s; "
        f"completed {time.time() - expected_start:.1f} s into the window, run count {done['run_count']}"
    )
