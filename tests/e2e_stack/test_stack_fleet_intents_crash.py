"""A fleet whose worker dies after its starts left but before any run id was recorded, on machines that
share no result storage and keep the start records in Prefect Variables (the default records).

What the resume has then: no checkpoint (the dead machine's disk is gone), no run-id record (the fleet
writes those once all its starts are out, and one start is held up by Splendor), only the intents
variable its batch wrote before the starts. The resumed run, on the other worker, must find each
source's run from that intent and attach to it (every run has finished by then, so Splendor's 409 would
not stop a second start), then hand it to ingestion once.

Slow by nature: detection waits for the heartbeat window (40 s here) and the dead holder's leases
(60 s), as a resume after a lost machine does.
"""

import shutil
import time
import uuid

import pytest

from splendor_flows.engine.run_records import source_digest
from splendor_flows.orchestration import intent_variables, run_records
from splendor_flows.orchestration.scope import Scope
from tests.stack_harness import StackHarness

from .conftest import ZOMBIE_WITHIN_SECONDS, seconds, state_after, wait_for
from .test_stack_sharded_fleet import accepted_calls, onboard_fleet, start_calls

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = 8
# The first start Splendor receives is answered this late: the fleet's run-id records wait for it (up to
# 10 s), which is the window the worker is killed in.
HELD_START_SECONDS = 20.0
START_ROUTE = "POST /v1/admin/airbyte-sources/{source_id}/sync"
# Each run is retried by "Airbyte" this many times (about 10 s in all): none has landed when the worker
# dies, so nothing was handed to ingestion yet, and every one has ended long before the resume.
INCOMPLETE_ATTEMPTS = 3


def variables_tagged(stack: StackHarness, tag: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = stack.api(
        "POST", "/variables/filter", json={"variables": {"tags": {"all_": [tag]}}}
    )
    return found


def test_a_fleet_killed_between_its_intents_and_its_run_ids_resumes_on_another_worker_without_a_second_sync(
    stack: StackHarness,
) -> None:
    prefix = f"intents-{uuid.uuid4().hex[:6]}"
    path, ids = onboard_fleet(stack, prefix, SOURCES)
    digests = {
        key: source_digest(
            Scope(api_base=stack.emulator_url, tenant=stack.config.tenant, source_key=key, sync_id="-")
        )
        for key in ids
    }
    for key in ids:
        stack.emulator(
            "POST",
            "/_emulator/faults",
            json={"kind": "run_incomplete", "source_key": key, "times": INCOMPLETE_ATTEMPTS, "count": 1},
        )
    stack.emulator(
        "POST",
        "/_emulator/faults",
        json={"kind": "latency", "route": START_ROUTE, "count": 1, "seconds": HELD_START_SECONDS},
    )
    # This machine's own result storage: the checkpoints go there and are lost with it.
    storage = stack.root / f"{prefix}-worker-results"
    run = stack.create_run(
        "sync-fleet",
        {"connectors_file": str(path), "trigger": "manual"},
        job_variables={
            "env": {
                "SPLENDOR_RUN_RECORDS": "prefect-variables",
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(storage),
            }
        },
    )
    wait_for(
        "every start but the held one accepted",
        lambda: sum(start_calls(stack, ids).values()) == SOURCES - 1,
        120,
    )
    victim = stack.worker_running(stack.read_run(run["id"]))
    assert victim is not None, "no worker holds the fleet's process"
    # Where the kill lands: the starts are known by the batch's intents only (no source has a record of
    # its own yet). Checked before the kill, so a slow machine that missed the window fails here, saying so.
    records = {f"{run_records.PREFIX}{digest}" for digest in digests.values()}
    own_records = {str(v["name"]) for v in variables_tagged(stack, run_records.TAG)}
    assert not own_records & records, "run-id records already written"
    intended = {
        digest
        for v in variables_tagged(stack, intent_variables.TAG)
        if isinstance(v["value"], dict)
        for digests_of_key in dict(v["value"]).get("starts", {}).values()
        for digest in digests_of_key
    }
    assert set(digests.values()) <= intended, "the batch's intents are not all written"
    assert accepted_calls(stack, ids, "/enqueue-ingest") == dict.fromkeys(ids, 0), (
        "a run was handed to ingestion before the kill"
    )
    killed_at = time.time()
    victim.kill_tree()
    shutil.rmtree(storage, ignore_errors=True)  # the machine's disk went with it
    try:
        # Crashed is a final state: the end is waited for only once the resume automation took it back.
        crashed = wait_for(
            "Crashed",
            lambda: state_after(stack, run["id"], "CRASHED", killed_at),
            ZOMBIE_WITHIN_SECONDS + 40,
        )
        wait_for(
            "the fleet to run again",
            lambda: state_after(stack, run["id"], "RUNNING", seconds(crashed["timestamp"])),
            90,
        )
        done = stack.wait_run(run["id"], timeout=240)
        took = time.time() - killed_at
        assert done["state"]["type"] == "COMPLETED", done["state"]
        assert done["run_count"] == 2, done["run_count"]
        # One Splendor run per source, found again from the intents, and each handed to ingestion once.
        assert start_calls(stack, ids) == dict.fromkeys(ids, 1)
        assert accepted_calls(stack, ids, "/enqueue-ingest") == dict.fromkeys(ids, 1)
        # Each source wrote its own record in the resume: nothing is left that only the intents know.
        own_records = {str(v["name"]) for v in variables_tagged(stack, run_records.TAG)}
        assert records <= own_records
        print(f"\nkill -> fleet Completed {took:.1f} s on its second run")
    finally:
        stack.restart_worker(victim)
