"""A fleet that outgrows one worker: `sync-fleet` with shards=2 on the stack's two workers.

The parent starts one `sync-fleet-shard` run per shard; the workers (one flow run at a time each) take
one each, each syncs its half of the sources, and the parent summarises them. A second parent run with
the same sync_id, as a deployment run, gets the same children back (idempotency keys) and starts nothing.
"""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.seed import bench_spec, connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_flows.fleet.run import shard_of
from tests.stack_harness import StackHarness

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

SOURCES = 20
SHARDS = 2


def onboard_fleet(stack: StackHarness, prefix: str, count: int) -> tuple[Path, dict[str, int]]:
    """Sources created straight through the API (the setup, not what is tested) and their file."""
    specs = [bench_spec(i, source_key=f"{prefix}-{i:02d}") for i in range(count)]
    config = SplendorConfig(
        api_base=stack.emulator_url, tenant_id=stack.config.tenant, token=stack.config.token
    )

    async def create() -> dict[str, int]:
        async with SplendorClient(config) as client:
            return await onboard(client, specs)

    ids = asyncio.run(create())
    path = stack.root / f"{prefix}-connectors.yaml"  # absolute: the workers read it from their own cwd
    path.write_text(connectors_yaml(specs))
    return path, ids


def children_of(stack: StackHarness, sync_id: str, shards: int = SHARDS) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = stack.api(
        "POST", "/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["fleet-shard"]}}}
    )
    mine = [
        r
        for r in runs
        if r["parameters"].get("sync_id") == sync_id and r["parameters"].get("shards") == shards
    ]
    return sorted(mine, key=lambda r: r["parameters"]["shard"])


def start_calls(stack: StackHarness, ids: dict[str, int]) -> dict[str, int]:
    """Start-sync calls that Splendor accepted, per source (from the emulator's call log)."""
    return accepted_calls(stack, ids, "/sync")


def accepted_calls(stack: StackHarness, ids: dict[str, int], route_end: str) -> dict[str, int]:
    """Calls to the per-source route ending in `route_end` that Splendor accepted (2xx), per source."""
    mutations = stack.emulator("GET", "/_emulator/mutations")["mutations"]
    by_id = {source_id: key for key, source_id in ids.items()}
    counts = dict.fromkeys(ids, 0)
    for m in mutations:
        source_id = m["path_params"].get("source_id")
        if (
            m["route"].endswith(route_end)
            and source_id is not None
            and int(source_id) in by_id
            and m["status"] is not None
            and 200 <= m["status"] < 300
        ):
            counts[by_id[int(source_id)]] += 1
    return counts


def worker_of(stack: StackHarness, run_id: str) -> str | None:
    """The stack worker that ran a run, from the workers' logs: the one that submitted it and was not
    turned away (a worker that lost the race for a run logs its id too, in an aborted submission)."""
    for worker in stack.workers:
        log = worker.log.read_text(errors="replace")
        if (
            f"submitting flow run '{run_id}'" in log
            and f"Aborted submission of flow run '{run_id}'" not in log
        ):
            return worker.name
    return None


def run_parent_here(stack: StackHarness, parameters: dict[str, Any]) -> int:
    """The parent as a local flow run in a process of its own (the bench's entry point), so that it
    holds no worker slot; returns its failed-source count."""
    env = stack.cli_env | {
        "SPLENDOR_API_BASE": stack.emulator_url,
        "SPLENDOR_TENANT_ID": stack.config.tenant,
        "SPLENDOR_TOKEN": stack.config.token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.sharded", "--parent", json.dumps(parameters)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_a_fleet_of_20_runs_as_2_shards_on_2_workers_and_each_source_syncs_once(stack: StackHarness) -> None:
    prefix = f"shard-{uuid.uuid4().hex[:6]}"
    path, ids = onboard_fleet(stack, prefix, SOURCES)
    sync_id = str(uuid.uuid4())
    # One flow run per worker at a time: each worker takes one shard, as on machines sized for one.
    for worker in list(stack.workers):
        stack.restart_worker(worker, limit=1)
    try:
        began = time.monotonic()
        failed = run_parent_here(
            stack,
            {"connectors_file": str(path), "shards": SHARDS, "sync_id": sync_id, "trigger": "manual"},
        )
        took = time.monotonic() - began
        assert failed == 0

        children = children_of(stack, sync_id)
        assert [c["parameters"]["shard"] for c in children] == list(range(SHARDS))
        assert all(c["state_type"] == "COMPLETED" for c in children), [c["state_name"] for c in children]
        assert [c["parameters"]["sync_id"] for c in children] == [sync_id] * SHARDS
        workers = {c["name"]: worker_of(stack, c["id"]) for c in children}
        assert sorted(w or "?" for w in workers.values()) == ["worker-1", "worker-2"], workers
        # Each source synced exactly once; its checkpoints sit under the fleet's sync_id in the shared
        # results folder, whichever shard synced it.
        assert start_calls(stack, ids) == dict.fromkeys(ids, 1)
        for key in ids:
            assert list(stack.results.glob(f"splendor-*/acme/{key}/{sync_id}")), key

        # The parent again, now as a deployment run on a worker, with the same sync_id: the same two
        # children come back (Completed, so not run again) and Splendor sees no new start.
        again = stack.create_run(
            "sync-fleet",
            {"connectors_file": str(path), "shards": SHARDS, "sync_id": sync_id, "trigger": "manual"},
        )
        redone = stack.wait_run(again["id"], timeout=90)
        assert redone["state"]["type"] == "COMPLETED", redone["state"]
        assert [c["id"] for c in children_of(stack, sync_id)] == [c["id"] for c in children]
        assert all(c["run_count"] == 1 for c in children_of(stack, sync_id))
        assert start_calls(stack, ids) == dict.fromkeys(ids, 1)

        # The same sync_id split another way: new children (other parameters), every source moved
        # around, and still no source is synced a second time.
        reshard = stack.create_run(
            "sync-fleet",
            {"connectors_file": str(path), "shards": SHARDS + 1, "sync_id": sync_id, "trigger": "manual"},
        )
        resharded = stack.wait_run(reshard["id"], timeout=90)
        assert resharded["state"]["type"] == "COMPLETED", resharded["state"]
        assert len(children_of(stack, sync_id, SHARDS + 1)) == SHARDS + 1
        assert start_calls(stack, ids) == dict.fromkeys(ids, 1)
        print(
            f"\n{SOURCES} sources in {SHARDS} shards: parent done in {took:.1f} s; children ran on {workers}"
        )
    finally:
        for worker in list(stack.workers):
            stack.restart_worker(worker)


def test_a_failed_shard_is_named_and_a_rerun_of_the_parent_resumes_only_that_shard(
    stack: StackHarness,
) -> None:
    prefix = f"shardfail-{uuid.uuid4().hex[:6]}"
    path, ids = onboard_fleet(stack, prefix, 8)
    broken = sorted(ids)[0]
    broken_shard = shard_of(broken, SHARDS)
    stack.emulator(
        "POST",
        "/_emulator/faults",
        json={"kind": "run_fail", "source_key": broken, "count": 1, "error_message": "connector exited 1"},
    )
    parameters = {"connectors_file": str(path), "shards": SHARDS, "trigger": "manual", "max_sync_attempts": 1}
    first = stack.create_run("sync-fleet", parameters)
    failed = stack.wait_run(first["id"], timeout=120)
    sync_id = first["id"]

    assert failed["state"]["type"] == "FAILED"
    message = failed["state"]["message"]
    assert f"1 of 8 source(s) failed ({broken})" in message, message
    assert f"shards not completed: {broken_shard} (Failed)" in message, message
    children = children_of(stack, sync_id)
    assert [c["state_type"] for c in children] == [
        "FAILED" if s == broken_shard else "COMPLETED" for s in range(SHARDS)
    ]

    # The same sync_id again: the failed child is rescheduled and resumes (its failed attempt comes
    # back from its checkpoint, the next one succeeds); the completed child is not run again.
    again = stack.create_run("sync-fleet", parameters | {"sync_id": sync_id})
    done = stack.wait_run(again["id"], timeout=120)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    rerun = children_of(stack, sync_id)
    assert [c["id"] for c in rerun] == [c["id"] for c in children]
    assert [c["run_count"] for c in rerun] == [2 if s == broken_shard else 1 for s in range(SHARDS)]
    starts = start_calls(stack, ids)
    assert starts == {key: 2 if key == broken else 1 for key in ids}
