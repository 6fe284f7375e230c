"""The production-shaped stack runs a deployment end to end on PostgreSQL, through a process worker."""

import uuid

import pytest

from splendor_flows.engine.store import CACHE_VERSION
from stack import POOL
from tests.stack_harness import StackHarness

from .conftest import connect, demo_spec, emulator_source, successful_calls

pytestmark = pytest.mark.e2e

SOURCE = "stripe-demo"


def test_sync_source_completes_on_the_postgres_backed_stack(stack: StackHarness) -> None:
    connect(stack, demo_spec())
    run = stack.create_run("sync-source", {"source_key": SOURCE, "trigger": "manual"})
    done = stack.wait_run(run["id"], timeout=120)

    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert done["work_pool_name"] == POOL
    # Splendor saw exactly one sync of the source (connect-source ran without its first sync), it
    # succeeded, and it was handed to ingestion once.
    source_id, runs = emulator_source(stack, SOURCE)
    assert [(r["trigger"], r["status"]) for r in runs] == [("manual", "succeeded")]
    assert successful_calls(stack, source_id, "/enqueue-ingest") == 1

    # The server really stores its runs in the stack's PostgreSQL, not in a SQLite file.
    rows = stack.query("SELECT state_type::text AS state FROM flow_run WHERE id = $1", uuid.UUID(run["id"]))
    assert rows == [{"state": "COMPLETED"}]
    assert not list((stack.root / "server").glob("*.db")), "the server created a SQLite database"

    # The run's checkpoints went to the shared result storage, keyed on its sync_id (= flow-run id),
    # where any worker can read them; none to a worker's own home.
    checkpoints = list((stack.results / f"splendor-{CACHE_VERSION}" / "acme" / SOURCE / run["id"]).iterdir())
    assert {p.name.split("-")[0] for p in checkpoints} >= {"sync", "poll", "ingest"}
    for worker in stack.workers:
        assert worker.alive()
        assert worker.home is not None
        assert not (worker.home / "storage").exists()


def test_the_stack_reports_two_online_workers_with_separate_homes(stack: StackHarness) -> None:
    workers = stack.api("POST", f"/work_pools/{POOL}/workers/filter", json={})
    assert {w["name"] for w in workers if w["status"] == "ONLINE"} >= {"stack-worker-1", "stack-worker-2"}
    homes = {w.home for w in stack.workers}
    assert len(homes) == 2
    automations = stack.api("POST", "/automations/filter", json={})
    names = [a["name"] for a in automations]
    assert names.count("splendor-crash-zombie-flow-runs") == 1
    assert names.count("splendor-resume-crashed-flow-runs") == 1
