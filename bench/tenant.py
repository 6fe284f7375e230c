"""`make bench-tenant` / `python -m bench.tenant`: a tenant's schedules at their real number on the stack.

One stack (PostgreSQL, Prefect server, emulator, process workers). The tenant has `--hourly` sources on
hourly crons spread over the hour (`m * * * *`, m = i % 60: a source due every minute) and `--minutely`
sources every minute. Their schedules are applied through the code `splendor-flows apply` runs
(orchestration.source_schedules), so they land as schedule groups of `sync-scheduled` (the hourly ones
in one group per window of `--window` minutes); Prefect's scheduler creates the ticks and the workers
run them. Nothing is started by hand.

First one idle minute (the stack with no source schedule: its fixed cost), then two phases: the hourly
sources alone (the every-minute group paused) for one whole window, from its first minute, then all of
them for `--minutes`. For each: the ticks and syncs that ran, how late the work of each due source
started (Splendor's `created_at` of its run against the source's own cron time: scheduler, worker
poll, process start and the tick's own work, all real), and the orchestration CPU (workers with their
flow-run processes, the Prefect server and PostgreSQL) as a share of one core. Scaled down: only the
Splendor side (syncs of 2 s, 20 ms per call, on the emulator).
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import emulator_config
from bench.seed import TENANT
from bench.sharded import _cpu, _wait_children_reaped

REPO = Path(__file__).resolve().parents[1]
SYNC_PROVIDER = "bench-2"  # syncs of 2 s (bench/__main__.py's emulator config)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def _onboard(stack: Any, keys: list[str]) -> None:
    from bench.seed import bench_spec, onboard_at

    specs = [bench_spec(i, provider_key=SYNC_PROVIDER, source_key=key) for i, key in enumerate(keys)]
    await onboard_at(stack.emulator_url, specs)


async def _schedule(crons: dict[str, str]) -> float:
    """Each source's schedule, applied as `apply` applies it; returns the seconds it took."""
    from splendor_flows.engine.schedules import (
        CronSchedule,
        ScheduleChange,
        schedule_parameters,
        schedule_slug,
    )
    from splendor_flows.orchestration.source_schedules import apply_change, read_schedules

    began = time.perf_counter()
    schedules = await read_schedules()
    assert schedules.deployment_id is not None, "sync-scheduled is not deployed on the stack"
    for key, cron in crons.items():
        wanted = CronSchedule(cron=cron, timezone="UTC", parameters=schedule_parameters(key, None))
        await apply_change(
            schedules.deployment_id, ScheduleChange(slug=schedule_slug(key), action="create", wanted=wanted)
        )
    return time.perf_counter() - began


def _ticks(stack: Any, since: float, until: float) -> list[dict[str, Any]]:
    deployment = stack.deployment("sync-scheduled")
    runs: list[dict[str, Any]] = stack.api(
        "POST",
        "/flow_runs/filter",
        json={
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {
                "expected_start_time": {
                    "after_": datetime.fromtimestamp(since, UTC).isoformat(),
                    "before_": datetime.fromtimestamp(until, UTC).isoformat(),
                }
            },
            "limit": 200,
        },
    )
    return runs


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def phase(
    stack: Any, label: str, minutes: int, workers: list[int], server: list[int], align_minutes: int = 1
) -> dict[str, Any]:
    """Measure whole minutes: from just after a boundary of `align_minutes` to just after a minute's."""
    now = time.time()
    start = (now // (60 * align_minutes) + 1) * 60 * align_minutes + 1
    time.sleep(max(0.0, start - now))
    parts = {"workers": workers, "server": server}
    before = _cpu(parts)
    end = start + minutes * 60
    time.sleep(max(0.0, end - time.time()))
    after = _cpu(parts)
    # Ticks due in the window (not the one due as it ends), once whatever of their work still runs is done.
    deadline = time.time() + 180
    while True:
        ticks = _ticks(stack, start - 1, end - 2)
        done = all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in ticks)
        if done or time.time() > deadline:
            break
        time.sleep(2)
    _wait_children_reaped(workers)
    state = stack.emulator("GET", "/_emulator/state", params={"tenant": TENANT})[TENANT]
    source_ids = {s["source_key"]: s["source_id"] for s in state["sources"]}
    starts: dict[int, list[float]] = {}
    for run in state["runs"]:
        starts.setdefault(run["source_id"], []).append(_seconds(run["created_at"]))
    late: list[float] = []
    missing = 0
    for tick in ticks:
        scheduled = _seconds(tick["expected_start_time"])
        later = tick["parameters"].get("start_after_seconds") or {}
        for key in tick["parameters"].get("source_keys") or []:
            due = scheduled + later.get(key, 0)
            after_due = [t for t in starts.get(source_ids[key], []) if t >= due - 1]
            if after_due and min(after_due) - due <= 120:
                late.append(min(after_due) - due)
            else:
                missing += 1
    cpu = sum(after.values()) - sum(before.values())
    seconds = end - start
    return {
        "label": label,
        "minutes": minutes,
        "ticks": len(ticks),
        "tick_states": {
            s: sum(r["state_type"] == s for r in ticks) for s in {r["state_type"] for r in ticks}
        },
        # Why a tick did not complete (a crash, a failure): its state's message and its group's size.
        "tick_troubles": [
            f"{r['name']} ({len(r['parameters'].get('source_keys') or [])} sources): {r['state_type']} "
            f"{(r.get('state') or {}).get('message') or ''}".strip()
            for r in ticks
            if r["state_type"] != "COMPLETED"
        ],
        "due": len(late) + missing,
        "missing": missing,
        "late_p50": _pct(late, 0.5),
        "late_p95": _pct(late, 0.95),
        "late_max": max(late) if late else float("nan"),
        "cpu_seconds": cpu,
        "cpu_workers": after["workers"] - before["workers"],
        "cpu_server": after["server"] - before["server"],
        "core_share": cpu / seconds,
        "cpu_per_sync_ms": 1000 * cpu / len(late) if late else float("nan"),
    }


@contextlib.contextmanager
def _stack_settings(env: dict[str, str]) -> Iterator[None]:
    """This process's Prefect client pointed at the stack. Prefect reads its settings from the
    environment once, at import: changing os.environ afterwards would leave the client on an ephemeral
    server of its own, where sync-scheduled is not deployed."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    os.environ.update(env)  # for subprocesses
    with temporary_settings(
        {PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"]}
    ):
        yield


def scheduled_runs(stack: Any) -> dict[str, int]:
    rows = stack.query(
        "select d.name, count(*) as n from flow_run f join deployment d on f.deployment_id = d.id "
        "where f.state_type = 'SCHEDULED' group by d.name"
    )
    return {str(r["name"]): int(str(r["n"])) for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tenant", description=__doc__)
    parser.add_argument("--hourly", type=int, default=1000)
    parser.add_argument("--minutely", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=3, help="length of the phase with every source")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="minutes of crons one schedule group spans (a divisor of 60; default: the product's)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=5.0, help="the workers' poll interval (s)")
    args = parser.parse_args()
    from splendor_flows.orchestration import source_schedules
    from tests.stack_harness import StackConfig
    from tests.stack_harness import StackHarness as Stack

    if args.window is not None:
        if args.window < 1 or 60 % args.window:
            parser.error(
                f"--window: {args.window} is not a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)"
            )
        source_schedules.WINDOW_MINUTES = args.window
    window = source_schedules.WINDOW_MINUTES

    (REPO / "var").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-tenant-", dir=REPO / "var"))
    config_file = root / "emulator.json"
    config_file.write_text(json.dumps(emulator_config(root, 20.0, [])))
    config = StackConfig(
        root=root,
        workers=args.workers,
        server_port=0,
        emulator_port=0,
        durable=False,
        ui=False,
        worker_limit=8,
        worker_poll_seconds=args.poll,
        emulator_args=("--config", str(config_file)),
        extra_env={"PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    hourly = {f"hourly-{i:04d}": f"{i % 60} * * * *" for i in range(args.hourly)}
    minutely = {f"minutely-{i:04d}": "* * * * *" for i in range(args.minutely)}
    began = time.perf_counter()
    try:
        with Stack(config) as stack, _stack_settings(stack.cli_env):
            asyncio.run(_onboard(stack, [*hourly, *minutely]))
            workers = [w.pid for w in stack.workers]
            server = [p.pid for p in stack.procs.started if p.name in ("server", "postgres")]
            # What the stack costs with no source scheduled: its services, the workers' polls.
            idle = phase(stack, "idle stack, no source schedule", 1, workers, server)
            applied = asyncio.run(_schedule(hourly | minutely))
            groups = [
                s for s in stack.deployment("sync-scheduled")["schedules"] if s["slug"].startswith("sources-")
            ]
            every_minute = next(s for s in groups if s["schedule"].get("cron") == "* * * * *")
            deployment_id = stack.deployment("sync-scheduled")["id"]
            # Phase 1: the hourly sources alone.
            stack.api(
                "PATCH",
                f"/deployments/{deployment_id}/schedules/{every_minute['id']}",
                # With its parameters: Prefect clears what a schedule update does not resend.
                json={"active": False, "parameters": every_minute["parameters"]},
            )
            time.sleep(70)  # the scheduler's loop creates the groups' runs
            held = scheduled_runs(stack)
            first = phase(stack, f"{args.hourly} hourly", window, workers, server, align_minutes=window)
            stack.api(
                "PATCH",
                f"/deployments/{deployment_id}/schedules/{every_minute['id']}",
                json={"active": True, "parameters": every_minute["parameters"]},
            )
            time.sleep(70)
            held_all = scheduled_runs(stack)
            second = phase(
                stack, f"{args.hourly} hourly + {args.minutely} every minute", args.minutes, workers, server
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = [
        f"Tenant on the stack: {args.workers} workers (poll {args.poll:.0f} s), {len(groups)} schedule "
        f"groups (windows of {window} min) for {args.hourly + args.minutely} sources (applied in "
        f"{applied:.0f} s); syncs of 2 s, 20 ms per call",
        f"Scheduled runs held by the server: hourly alone {held}, with the every-minute group {held_all}",
        "",
        "| phase | ticks | due syncs | missing | start late p50 / p95 / max (s) | orchestration CPU (s): "
        "workers + server & PG | share of one core | CPU per sync (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in (idle, first, second):
        lines.append(
            f"| {p['label']} ({p['minutes']} min) | {p['ticks']} {p['tick_states']} | {p['due']} | "
            f"{p['missing']} | "
            f"{p['late_p50']:.1f} / {p['late_p95']:.1f} / {p['late_max']:.1f} | {p['cpu_seconds']:.1f}: "
            f"{p['cpu_workers']:.1f} + {p['cpu_server']:.1f} | {100 * p['core_share']:.1f} % | "
            f"{p['cpu_per_sync_ms']:.0f} |"
        )
    for p in (first, second):
        lines += [f"Not completed in {p['label']}: {trouble}" for trouble in p["tick_troubles"]]
    lines += ["", f"Bench wall time: {time.perf_counter() - began:.0f} s"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
