"""A tenant on the stack: every-minute schedules made by `splendor-flows apply`, the scheduler, two workers,
a fleet run and a manual sync landing on some of the same sources, and a worker SIGKILLed mid-tick.

`apply` puts the sources into one schedule group of the sync-scheduled deployment; the scheduler creates
its runs (ticks) and the workers take them. Nothing here starts a tick by hand. The window is the group's
first two ticks: the first one meets the fleet and the manual sync on some of its sources, and its worker
is killed while it syncs; the second one reschedules it once zombie detection has marked it Crashed, and
meets the sources the dead worker still held. Over the window:
- no source ever has two Splendor runs in flight at once (every entry point holds the source's slot);
- every source syncs on each tick, a sync of its own per tick, allowing one tick of lateness, and the
  killed worker's sources within the slot's release bound after that;
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
from tests.stack_harness import FINAL_STATES, StackHarness

from .conftest import ZOMBIE_WITHIN_SECONDS, demo_spec, seconds, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = 10
TICKS = 2
# The fleet and the manual sync start this long before the first tick, so that it finds them in flight.
AHEAD_SECONDS = 10
# A sync counts for a tick from shortly before it (the fleet and the manual sync) until the next tick, plus
# one tick of lateness, plus the slot's release bound for the sources the killed worker held.
EARLY_SECONDS = 15
ALLOWANCE_SECONDS = 60 + 60 + RELEASE_BOUND_SECONDS
# A run's end: Crashed is not one here, since the resume automation reschedules a crashed run.
ENDED = FINAL_STATES - {"CRASHED"}
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


def sync_spans(stack: StackHarness, keys: list[str]) -> dict[str, list[tuple[float, float, dict[str, Any]]]]:
    """Each source's Splendor runs in creation order: (created, completed or far future, the run)."""
    tenant = splendor_state(stack)
    ids = {s["source_key"]: s["source_id"] for s in tenant["sources"] if s["source_key"] in keys}
    spans: dict[str, list[tuple[float, float, dict[str, Any]]]] = {}
    for key in keys:
        runs = sorted((r for r in tenant["runs"] if r["source_id"] == ids[key]), key=lambda r: r["run_id"])
        spans[key] = [
            (seconds(r["created_at"]), seconds(r["completed_at"] or "9999-01-01T00:00:00+00:00"), r)
            for r in runs
        ]
    return spans


def syncs_per_tick(
    spans: dict[str, list[tuple[float, float, dict[str, Any]]]], window_start: float
) -> dict[str, list[float | None]]:
    """For each source, the start of the sync that answers each tick of the window, or None.

    Each tick needs a sync of its own, begun within the tick's allowance: the earliest one not already
    answering an earlier tick. One late sync therefore never counts for two ticks."""
    answers: dict[str, list[float | None]] = {}
    for key, runs in spans.items():
        unused = sorted(began for began, _, _ in runs)
        answers[key] = []
        for tick in range(TICKS):
            due = window_start + tick * 60
            match = next((b for b in unused if due - EARLY_SECONDS <= b <= due + ALLOWANCE_SECONDS), None)
            if match is not None:
                unused.remove(match)
            answers[key].append(match)
    return answers


def unsynced_ticks(
    spans: dict[str, list[tuple[float, float, dict[str, Any]]]], window_start: float
) -> list[tuple[str, int]]:
    """The (source, tick) pairs of the window without a sync of their own within the tick's allowance."""
    return [
        (key, tick)
        for key, answers in syncs_per_tick(spans, window_start).items()
        for tick, began in enumerate(answers)
        if began is None
    ]


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
    deployment_id = stack.deployment("sync-scheduled")["id"]
    group = [s for s in stack.deployment("sync-scheduled")["schedules"] if s["parameters"].get("source_keys")]
    assert [sorted(s["parameters"]["source_keys"]) for s in group] == [keys]

    # The first tick the scheduler made: the window starts at its slot.
    first = wait_for(
        "the scheduler to create the group's first tick",
        lambda: min(tick_runs(stack, keys), key=lambda r: r["expected_start_time"], default=None),
        timeout=120,
        every=0.5,
    )
    window_start = seconds(first["expected_start_time"])
    victim = None
    killed_at = 0.0
    manual = None
    try:
        # Just before it: a fleet of four of the sources and a manual sync of a fifth.
        wait_for(
            "the first tick to come near",
            lambda: time.time() >= window_start - AHEAD_SECONDS,
            timeout=120,
            every=0.2,
        )
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

        # During the first tick, its worker dies with everything it runs (the machine is gone).
        wait_for(
            "the first tick to run",
            lambda: stack.read_run(first["id"])["start_time"],
            timeout=120,
            every=0.25,
        )
        time.sleep(2)  # inside its sources' syncs
        victim = wait_for("the tick's worker", lambda: stack.worker_running(stack.read_run(first["id"])), 30)
        killed_at = time.time()
        victim.kill_tree()

        assert manual.wait(timeout=180) == 0, manual.stdout.read() if manual.stdout else ""
        # The fleet may have run on the killed worker too: Crashed is then not its end, the resume
        # automation takes it back to the surviving worker, where it waits out its dead lease
        # (RELEASE_BOUND_SECONDS) before its sources' syncs.
        try:
            fleet_done = wait_for(
                "the fleet to end",
                lambda: (run := stack.read_run(fleet["id"]))["state"]["type"] in ENDED and run,
                timeout=ZOMBIE_WITHIN_SECONDS + 60 + RELEASE_BOUND_SECONDS + 120,
                every=0.5,
            )
        except AssertionError:
            states = [(s["name"], s["timestamp"], s.get("message")) for s in stack.run_states(fleet["id"])]
            logs = "\n".join(stack.run_logs(fleet["id"]))
            raise AssertionError(f"the fleet never ended: {states}; its last logs:\n{logs}") from None
        assert fleet_done["state"]["type"] == "COMPLETED", fleet_done["state"]
        # The killed tick: marked Crashed by zombie detection, rescheduled by its group's next tick (Prefect's
        # resume automation does not act on runs its scheduler made), run again on the surviving worker,
        # where it hands the runs it had started to ingestion.
        try:
            resumed = wait_for(
                "the killed tick to be resumed and complete",
                lambda: (
                    (run := stack.read_run(first["id"]))["state"]["type"] in ("COMPLETED", "FAILED") and run
                ),
                timeout=300,
                every=0.5,
            )
        except AssertionError:
            states = [(s["name"], s["timestamp"], s.get("message")) for s in stack.run_states(first["id"])]
            events = stack.api(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"prefix": ["prefect.automation.action"]},
                        "related": {"resources_in_roles": [[f"prefect.flow-run.{first['id']}", "target"]]},
                    },
                    "limit": 20,
                },
            )
            actions = [(e["event"], e.get("payload")) for e in events.get("events", [])]
            raise AssertionError(
                f"the killed tick never completed: {states}; automation actions: {actions}"
            ) from None
        assert resumed["state"]["type"] == "COMPLETED" and resumed["run_count"] >= 2, (
            resumed["state"]["type"],
            resumed["state"].get("message"),
            resumed["run_count"],
        )

        # Each tick of the window finds a sync of every source within its allowance: wait for them (the
        # later ticks keep coming meanwhile), up to the last tick's allowance.
        window_end = window_start + (TICKS - 1) * 60 + ALLOWANCE_SECONDS
        wait_for(
            "every source to sync for every tick of the window",
            lambda: not unsynced_ticks(sync_spans(stack, keys), window_start),
            timeout=max(window_end - time.time(), 0) + 5,
            every=1,
        )
    finally:
        if manual is not None and manual.poll() is None:
            manual.kill()
        if victim is not None:
            stack.restart_worker(victim)
        # Off: the server deletes the group's future ticks; the ones already due or under way finish.
        stack.api("PATCH", f"/deployments/{deployment_id}/schedules/{group[0]['id']}", json={"active": False})
    ticks = wait_for(
        "the group's ticks to finish",
        lambda: (
            (runs := tick_runs(stack, keys)) and all(r["state_type"] in FINAL_STATES for r in runs) and runs
        ),
        timeout=180,
        every=0.5,
    )
    assert killed_at, "no worker was killed"

    spans = sync_spans(stack, keys)
    # Splendor's enqueue is idempotent per run (a second one queues nothing new), so "handed to
    # ingestion" is what there is to see: every succeeded run has its ingest runs.
    ingested = {i["connector_run_id"] for i in splendor_state(stack)["ingest_runs"]}
    late: dict[str, float] = {}
    for key, runs in spans.items():
        for (_, ended, _), (began, _, _) in itertools.pairwise(runs):
            assert began >= ended, f"{key}: two Splendor runs in flight at once"
        assert all(r["status"] == "succeeded" for _, _, r in runs), [
            (r["run_id"], r["status"]) for *_, r in runs
        ]
        not_ingested = [(r["run_id"], r["created_at"]) for *_, r in runs if r["run_id"] not in ingested]
        assert not not_ingested, f"{key}: succeeded runs never handed to ingestion: {not_ingested}"
    for key, answers in syncs_per_tick(spans, window_start).items():
        for tick, began in enumerate(answers):
            assert began is not None, f"{key}: no sync of its own for the tick at +{tick * 60} s"
            late[key] = max(late.get(key, 0.0), began - (window_start + tick * 60))
    states = {r["name"]: r["state_type"] for r in ticks}
    assert set(states.values()) == {"COMPLETED"}, states
    print(
        f"\n{SOURCES} sources every minute, {len(ticks)} ticks {states}; runs per source "
        f"{sorted(len(r) for r in spans.values())}; worst lateness {max(late.values()):.1f} s; "
        f"worker killed {killed_at - window_start:.0f} s into the window; first tick "
        f"{window_start - applied_at:.0f} s after apply"
    )
