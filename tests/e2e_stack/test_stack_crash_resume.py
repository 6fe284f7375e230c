"""A worker dies mid-poll: the zombie automation marks its run Crashed, the resume automation reschedules
it, the other worker picks it up and the pipeline attaches to the same Splendor run.

Slow by nature: detection waits for the heartbeat window (40 s here, 90 s as shipped).
"""

import time

import pytest

from stack.processes import Proc
from tests.stack_harness import StackHarness

from .conftest import (
    ZOMBIE_WITHIN_SECONDS,
    connect,
    demo_spec,
    emulator_source,
    polling_task,
    seconds,
    state_after,
    successful_calls,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCE = "stripe-zombie"
ZOMBIE_MESSAGE = "Flow run marked as crashed due to missing heartbeats."
# 2 s per attempt plus 35 incomplete (Airbyte-retried) attempts: a Splendor run of about 90 s, still in
# flight when the killed run is detected and resumed (at most the 40 s window, the automations' and the
# worker's 1 s poll after the kill), so the resumed run attaches to a run that is under way.
INCOMPLETE_ATTEMPTS = 35


def test_killed_worker_run_is_crashed_then_resumed_on_the_other_worker(stack: StackHarness) -> None:
    connect(stack, demo_spec(source_key=SOURCE, source_name="Stripe (zombie)"))
    stack.emulator(
        "POST",
        "/_emulator/faults",
        json={"kind": "run_incomplete", "source_key": SOURCE, "times": INCOMPLETE_ATTEMPTS, "count": 1},
    )
    run = stack.create_run("sync-source", {"source_key": SOURCE, "trigger": "manual"})
    run_id = run["id"]

    wait_for("the run to poll its Splendor run", lambda: polling_task(stack, run_id), timeout=90)
    victim = stack.worker_running(stack.read_run(run_id))
    assert victim is not None, "no worker of the stack holds the run's process"
    [survivor] = [w for w in stack.workers if w is not victim]
    _, runs = emulator_source(stack, SOURCE)
    assert [r["status"] for r in runs] in (["pending"], ["running"], ["incomplete"])

    killed_at = time.time()
    victim.kill_tree()  # the worker, its flow-run process, everything: the machine is gone
    try:
        assert not victim.alive()
        check_crash_and_resume(stack, run_id, killed_at, survivor)
    finally:
        # Other tests share the stack: bring the "machine" back.
        stack.restart_worker(victim)


def check_crash_and_resume(stack: StackHarness, run_id: str, killed_at: float, survivor: Proc) -> None:
    crashed = wait_for(
        "Crashed", lambda: state_after(stack, run_id, "CRASHED", killed_at), ZOMBIE_WITHIN_SECONDS + 40
    )
    assert crashed["message"] == ZOMBIE_MESSAGE
    rescheduled = wait_for(
        "AwaitingRetry", lambda: state_after(stack, run_id, "SCHEDULED", seconds(crashed["timestamp"])), 30
    )
    assert rescheduled["name"] == "AwaitingRetry"
    resumed = wait_for(
        "Running again", lambda: state_after(stack, run_id, "RUNNING", seconds(crashed["timestamp"])), 60
    )
    resumed_on = wait_for(
        "the resumed run's worker", lambda: stack.worker_running(stack.read_run(run_id)), 30
    )
    assert resumed_on is survivor
    _, runs = emulator_source(stack, SOURCE)
    in_flight_at_resume = runs[0]["status"] not in ("succeeded", "failed", "cancelled")
    # What the test is about: attaching to a Splendor run still under way. Had it ended already, the
    # resumed run would only have read a finished run, which proves much less.
    assert in_flight_at_resume, f"the Splendor run had ended ({runs[0]['status']}) before the run resumed"

    done = stack.wait_run(run_id, timeout=180)
    finished_at = time.time()

    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert done["run_count"] == 2
    # One Splendor run: the resumed flow run attached to the run the dead worker had started (same
    # flow-run id, so same sync_id, so its checkpoint from the shared storage) and ingested it once.
    source_id, runs = emulator_source(stack, SOURCE)
    assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "succeeded")]
    assert successful_calls(stack, source_id, "/sync") == 1
    assert successful_calls(stack, source_id, "/enqueue-ingest") == 1

    detect = seconds(crashed["timestamp"]) - killed_at
    restart = seconds(resumed["timestamp"]) - seconds(crashed["timestamp"])
    print(
        f"\nkill -> Crashed {detect:.1f} s "
        f"(window {ZOMBIE_WITHIN_SECONDS:.0f} s, heartbeats every 30 s); "
        f"Crashed -> Running on {survivor.name} {restart:.1f} s; "
        f"kill -> Completed {finished_at - killed_at:.1f} s; Splendor run in flight at resume: "
        f"{in_flight_at_resume}; Splendor runs for the source: {len(runs)}"
    )
