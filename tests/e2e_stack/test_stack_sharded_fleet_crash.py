"""A shard's worker dies mid-fleet: its child run is marked Crashed, resumed on the other worker, and
neither re-runs the sources it had finished nor starts a second sync for the ones in flight.

Slow by nature: detection waits for the heartbeat window (40 s here, 90 s as shipped).
"""

import time
import uuid

import pytest

from splendor_flows.fleet.run import shard_of
from tests.stack_harness import StackHarness

from .test_stack_crash_resume import wait_for
from .test_stack_sharded_fleet import accepted_calls, children_of, onboard_fleet, start_calls

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = 12
SHARDS = 2
VICTIM_SHARD = 0
# One source per shard whose Splendor run is retried by "Airbyte" long enough (about a minute) to be in
# flight when its shard's worker dies.
INCOMPLETE_ATTEMPTS = 20


def enqueued(stack: StackHarness, ids: dict[str, int], keys: list[str]) -> bool:
    calls = accepted_calls(stack, ids, "/enqueue-ingest")
    return all(calls[k] > 0 for k in keys)


def test_a_killed_shard_resumes_elsewhere_without_rerunning_finished_sources(stack: StackHarness) -> None:
    prefix = f"shardkill-{uuid.uuid4().hex[:6]}"
    path, ids = onboard_fleet(stack, prefix, SOURCES)
    by_shard = {s: sorted(k for k in ids if shard_of(k, SHARDS) == s) for s in range(SHARDS)}
    assert all(len(keys) >= 2 for keys in by_shard.values()), by_shard
    slow = {s: keys[0] for s, keys in by_shard.items()}
    for key in slow.values():
        stack.emulator(
            "POST",
            "/_emulator/faults",
            json={"kind": "run_incomplete", "source_key": key, "times": INCOMPLETE_ATTEMPTS, "count": 1},
        )
    parent = stack.create_run(
        "sync-fleet", {"connectors_file": str(path), "shards": SHARDS, "trigger": "manual"}
    )
    sync_id = parent["id"]

    finished_before_kill = [k for k in by_shard[VICTIM_SHARD] if k != slow[VICTIM_SHARD]]
    wait_for(
        "the victim shard's fast sources to be ingested",
        lambda: enqueued(stack, ids, finished_before_kill),
        90,
    )
    victim_run = children_of(stack, sync_id)[VICTIM_SHARD]
    victim = stack.worker_running(stack.read_run(victim_run["id"]))
    assert victim is not None, "no worker holds the victim shard's process"
    killed_at = time.time()
    victim.kill_tree()  # the machine is gone, with whatever else it was running (maybe the parent)
    try:
        done = stack.wait_run(parent["id"], timeout=180)
        took = time.time() - killed_at
        assert done["state"]["type"] == "COMPLETED", done["state"]
        children = children_of(stack, sync_id)
        assert [c["state_type"] for c in children] == ["COMPLETED"] * SHARDS
        resumed = children[VICTIM_SHARD]
        assert resumed["id"] == victim_run["id"] and resumed["run_count"] == 2
        # Every source was started once: the resumed shard skipped its finished sources (checkpoints and
        # start records) and attached to the run in flight instead of starting another.
        assert start_calls(stack, ids) == dict.fromkeys(ids, 1)
        print(f"\nkill -> parent Completed {took:.1f} s; the killed shard ran {resumed['run_count']} times")
    finally:
        stack.restart_worker(victim)
