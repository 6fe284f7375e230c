"""A tenant on the stack: every-minute schedules made by `splendor-flows apply`, the scheduler, two workers,
a fleet run and a manual sync landing on some of the same sources, and a worker SIGKILLed mid-tick.

`apply` puts the sources into one schedule group of the sync-scheduled deployment; the scheduler creates
its runs (ticks) and the workers take them. Nothing here starts a tick by hand. Over the window:
- no source ever has two Splendor runs in flight at once (every entry point holds the source's slot);
- every source syncs on each tick, allowing one tick of lateness, and the killed worker's sources within
  the slot's release bound after that;
- every succeeded run is handed to ingestion;
- no tick, fleet or manual run fails.
"""

import itertools
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from splendor_flows.orchestration.source_lock import RELEASE_BOUND_SECONDS
from tests.stack_harness import StackHarness

from .conftest import demo_spec, seconds, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = 10
TICKS = 3
SPLENDOR_CLI = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "splendor-flows"


def connectors_file(path: Path, keys: list[str]) -> None:
    spec = demo_spec()
    shared = {
        name: spec[name] for name in ("provider_key", "dataset_id", "bucket", "iam_role_arn", "streams")
    }
    shared["credentials_secret"] = spec["credentials_secret"]
    sources = [{"source_key": key, "schedule": {"cron": "* * * * *"}} for key in keys]
    path.write_text(yaml.safe_dump({"version": 1, "defaults": shared, "sources": sources}))


def tick_runs(stack: StackHarness, keys: list[str]) -> list[dict[str, Any]]:
    deployment = stack.deployment("sync-scheduled")
    runs: list[dict[str, Any]] = stack.api(
        "POST", "/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment["id"]]}}}
    )
    return [r for r in runs if set(r["parameters"].get("source_keys") or []) == set(keys)]


def splendor_state(stack: StackHarness) -> dict[str, Any]:
    state: dict[str, Any] = stack.emulator("GET", "/_emulator/state", params={"tenant": stack.config.tenant})
    return state[stack.config.tenant]


def test_a_tenant_syncs_on_its_schedules_beside_a_fleet_a_manual_sync_and_a_killed_worker(
    stack: StackHarness, tmp_path: Path
) -> None:
    prefix = f"tenant-{uuid.uuid4().hex[:5]}"
    keys = [f"{prefix}-{i:02d}" for i in range(SOURCES)]
    path = tmp_path / "tenant.yaml"
    connectors_file(path, keys)
    env = stack.cli_env | {
        "SPLENDOR_API_BASE": stack.emulator_url,
        "SPLENDOR_TENANT_ID": stack.config.tenant,
        "SPLENDOR_TOKEN": stack.config.token,
    }
    applied = subprocess.run(
        [str(SPLENDOR_CLI), "apply", str(path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    applied_at = time.time()
    group = [s for s in stack.deployment("sync-scheduled")["schedules"] if s["parameters"].get("source_keys")]
    assert [sorted(s["parameters"]["source_keys"]) for s in group] == [keys]

    # The first tick the scheduler made and a worker ran: the window starts at its slot.
    first = wait_for(
        "the first scheduled tick to run",
        lambda: min(
            (r for r in tick_runs(stack, keys) if r["start_time"]),
            key=lambda r: r["expected_start_time"],
            default=None,
        ),
        timeout=180,
        every=1,
    )
    window_start = seconds(first["expected_start_time"])

    # Just before the second tick: a fleet of four of the sources and a manual sync of a fifth.
    wait_for("the second tick to come near", lambda: time.time() > window_start + 50, timeout=120, every=0.5)
    fleet_file = tmp_path / "fleet.yaml"
    connectors_file(fleet_file, keys[:4])
    fleet = stack.create_run("sync-fleet", {"connectors_file": str(fleet_file), "trigger": "manual"})
    manual = subprocess.Popen(
        [str(SPLENDOR_CLI), "sync", keys[5]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    # During the second tick, its worker dies with everything it runs (the machine is gone).
    second = wait_for(
        "the second tick to run",
        lambda: next(
            (
                r
                for r in tick_runs(stack, keys)
                if r["start_time"] and seconds(r["expected_start_time"]) >= window_start + 59
            ),
            None,
        ),
        timeout=120,
        every=0.5,
    )
    time.sleep(2)  # inside its sources' syncs
    victim = wait_for("the tick's worker", lambda: stack.worker_running(stack.read_run(second["id"])), 30)
    killed_at = time.time()
    victim.kill_tree()
    try:
        window_end = window_start + TICKS * 60
        wait_for(
            "the window to pass", lambda: time.time() > window_end + 20, timeout=TICKS * 60 + 120, every=1
        )
        assert manual.wait(timeout=120) == 0, manual.stdout.read() if manual.stdout else ""
        fleet_done = stack.wait_run(fleet["id"], timeout=180)
        assert fleet_done["state"]["type"] == "COMPLETED", fleet_done["state"]
        # The killed tick: marked Crashed by zombie detection, rescheduled by its group's next tick (Prefect's
        # resume automation does not act on runs its scheduler made), run again on the surviving worker,
        # where it hands the runs it had started to ingestion.
        try:
            resumed = wait_for(
                "the killed tick to be resumed and complete",
                lambda: (
                    (run := stack.read_run(second["id"]))["state"]["type"] in ("COMPLETED", "FAILED") and run
                ),
                timeout=240,
                every=1,
            )
        except AssertionError:
            states = [(s["name"], s["timestamp"], s.get("message")) for s in stack.run_states(second["id"])]
            events = stack.api(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"prefix": ["prefect.automation.action"]},
                        "related": {"resources_in_roles": [[f"prefect.flow-run.{second['id']}", "target"]]},
                    },
                    "limit": 20,
                },
            )
            actions = [(e["event"], e.get("payload")) for e in events.get("events", [])]
            raise AssertionError(
                f"the killed tick never completed: {states}; automation actions: {actions}"
            ) from None
        assert resumed["state"]["type"] == "COMPLETED" and resumed["run_count"] >= 2, resumed["state"]
    finally:
        stack.restart_worker(victim)
        stack.api(
            "PATCH",
            f"/deployments/{stack.deployment('sync-scheduled')['id']}/schedules/{group[0]['id']}",
            json={"active": False},
        )

    tenant = splendor_state(stack)
    ids = {s["source_key"]: s["source_id"] for s in tenant["sources"] if s["source_key"] in keys}
    runs_of = {
        key: sorted((r for r in tenant["runs"] if r["source_id"] == ids[key]), key=lambda r: r["run_id"])
        for key in keys
    }
    ingested = {i["connector_run_id"] for i in tenant["ingest_runs"]}
    late: dict[str, float] = {}
    for key, runs in runs_of.items():
        spans = [
            (seconds(r["created_at"]), seconds(r["completed_at"] or "9999-01-01T00:00:00+00:00"))
            for r in runs
        ]
        for (_, ended), (began, _) in itertools.pairwise(spans):
            assert began >= ended, f"{key}: two Splendor runs in flight at once"
        assert all(r["status"] == "succeeded" for r in runs), [(r["run_id"], r["status"]) for r in runs]
        not_ingested = [(r["run_id"], r["created_at"]) for r in runs if r["run_id"] not in ingested]
        assert not not_ingested, f"{key}: succeeded runs never handed to ingestion: {not_ingested}"
        # Each tick of the window finds a sync of the source by the next tick; the sources of the killed
        # tick may wait for their slots to be released first.
        allowance = 60 + 60 + (RELEASE_BOUND_SECONDS if killed_at else 0)
        for tick in range(1, TICKS):
            due = window_start + tick * 60
            synced = [b for b, _ in spans if due - 15 <= b <= due + allowance]
            assert synced, f"{key}: no sync for the tick at +{tick * 60} s"
            late[key] = max(late.get(key, 0.0), min(synced) - due)
    ticks = [
        r
        for r in tick_runs(stack, keys)
        if r["start_time"] and seconds(r["expected_start_time"]) < window_end
    ]
    states = {r["name"]: r["state_type"] for r in ticks}
    print(
        f"\n{SOURCES} sources every minute, {len(ticks)} ticks {states}; runs per source "
        f"{sorted(len(r) for r in runs_of.values())}; worst lateness {max(late.values()):.1f} s; "
        f"worker killed {killed_at - window_start:.0f} s into the window; first tick "
        f"{window_start - applied_at:.0f} s after apply"
    )
