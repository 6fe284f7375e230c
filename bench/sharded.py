"""`make bench-sharded` / `python -m bench.sharded [--n N] [--workers 1,2,4]`: a fleet of N sources on
1, 2 and 4 workers of the production-shaped stack, against the floor script.

For each worker count k, a fresh stack (PostgreSQL, Prefect server, emulator, k process workers with
`--limit 1`, so each worker takes one shard) and the same Splendor concurrency limit: the global
concurrency limit `splendor-api-acme` at `--limit` slots, split evenly between the shards.

- k = 1: one `sync-fleet-shard` deployment run with shards=1 (what a parent would start), on the worker.
- k > 1: the parent `sync_fleet(shards=k)` runs as a local flow run in a process of its own (a parent
  run on a worker would hold one of the k single-slot workers while it waits) and starts k child runs
  that the workers take.

Measured per k: makespan (from creating the run to seeing it end), Splendor API calls per second,
orchestration CPU per source (the worker process trees with their flow-run processes, the Prefect
server and PostgreSQL, and the parent's process), and the peak RSS of a worker with its flow
run. The floor (bench/floor.py: the same calls in a bare asyncio + httpx script, the same request bound)
runs on the first stack, in this process. Emulator: 20 ms per call, syncs of 1-20 s, no run history.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.__main__ import emulator_config
from bench.seed import TENANT, TOKEN

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Figures:
    label: str
    n: int
    makespan: float = 0.0
    calls: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, per part
    peak_rss_mb: float = 0.0
    failed: int = 0
    note: str = ""
    parent_cpu: float = 0.0

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())


class RssSampler:
    """Samples each worker's tree (worker + its flow-run process) while a phase runs: a flow-run
    process is gone by the time the phase ends, so its peak must be read while it lives."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for root in self.roots:
                self.peak = max(self.peak, procs.peak_rss_mb(root))
            self._stop.wait(0.5)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu(parts: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(procs.cpu_seconds(pid) for pid in pids) for name, pids in parts.items()}


def _wait_children_reaped(worker_pids: list[int], timeout: float = 15.0) -> None:
    """Until every flow-run process has exited and been reaped (its CPU then counts in the worker's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(procs._tree(pid)) == 1 for pid in worker_pids):
            return
        time.sleep(0.2)


@contextmanager
def measured(stack: Any, figures: Figures) -> Iterator[None]:
    workers = [w.pid for w in stack.workers]
    server = [p.pid for p in stack.procs.started if p.name in ("server", "postgres")]
    parts = {"workers": workers, "server": server}
    stack.emulator("POST", "/_emulator/reset-counters")
    before = _cpu(parts)
    began = time.perf_counter()
    with RssSampler(workers) as rss:
        yield
    figures.makespan = time.perf_counter() - began
    _wait_children_reaped(workers)
    after = _cpu(parts)
    figures.cpu = {name: after[name] - before[name] for name in parts} | {"parent": figures.parent_cpu}
    figures.peak_rss_mb = rss.peak
    figures.calls = sum(stack.emulator("GET", "/_emulator/counts").values())


async def _onboard(stack: Any, n: int, work: Path) -> tuple[Path, list[str]]:
    from bench.seed import bench_spec, connectors_yaml, onboard_at

    specs = [bench_spec(i, provider_key=f"bench-{i % 20 + 1}", source_key=f"fleet-{i:04d}") for i in range(n)]
    await onboard_at(stack.emulator_url, specs)
    path = work / "connectors.yaml"
    path.write_text(connectors_yaml(specs))
    return path, [s.source_key for s in specs]


def run_fleet(stack: Any, k: int, n: int, connectors: Path, limit: int, label: str = "fleet") -> Figures:
    figures = Figures(f"{label}, {k} worker(s)", n)
    sync_id = f"bench-{uuid.uuid4().hex[:8]}"
    params: dict[str, Any] = {
        "connectors_file": str(connectors),
        "max_concurrency": limit,
        "sync_id": sync_id,
        "trigger": "scheduled",
    }
    with measured(stack, figures):
        if k == 1:
            run = stack.create_run("sync-fleet/sync-fleet-shard", params | {"shards": 1, "shard": 0})
            done = stack.wait_run(run["id"], timeout=3600)
            figures.failed = 0 if done["state"]["type"] == "COMPLETED" else -1
            figures.note = done["state"]["name"]
        else:
            # The parent in a process of its own: its CPU is read exactly (children's rusage) and kept
            # apart from this process's sampling.
            env = stack.cli_env | {
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "SPLENDOR_API_BASE": stack.emulator_url,
                "SPLENDOR_TENANT_ID": TENANT,
                "SPLENDOR_TOKEN": TOKEN,
            }
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done_parent = subprocess.run(
                [sys.executable, "-m", "bench.sharded", "--parent", json.dumps(params | {"shards": k})],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            figures.parent_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            figures.failed = (
                int(done_parent.stdout.strip().splitlines()[-1]) if done_parent.returncode == 0 else -1
            )
            if done_parent.returncode != 0:
                figures.note = done_parent.stderr[-300:]
    return figures


def parent(params: dict[str, Any]) -> int:
    """The parent run of a sharded fleet (k > 1), in this process; prints the failed count."""
    from splendor_flows.fleet.run import FleetFailed
    from splendor_flows.flows.sync_fleet import sync_fleet

    try:
        summary = asyncio.run(sync_fleet(**params))
        failed = summary.failed
    except FleetFailed as exc:
        failed = exc.summary.failed
    print(failed)
    return 0


def run_floor(stack: Any, n: int, keys: list[str], limit: int) -> Figures:
    from bench.floor import Api, floor_fleet
    from splendor_flows.engine.polling import PollOptions

    figures = Figures("floor script", n)

    async def go() -> int:
        api = Api(stack.emulator_url, TENANT, TOKEN, limit)
        runs = await floor_fleet(api, keys, PollOptions(), {})
        await api.http.aclose()
        return sum(r.status != "succeeded" for r in runs)

    stack.emulator("POST", "/_emulator/reset-counters")
    own = time.process_time()
    began = time.perf_counter()
    figures.failed = asyncio.run(go())
    figures.makespan = time.perf_counter() - began
    figures.cpu = {"script": time.process_time() - own}
    figures.calls = sum(stack.emulator("GET", "/_emulator/counts").values())
    return figures


async def _make_slots(stack: Any, keys: list[str]) -> int:
    """What `apply` does for the sources of its file: each source's Prefect limit (source_lock)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from splendor_flows.orchestration.scope import Scope
    from splendor_flows.orchestration.source_lock import ensure_source_limits

    scopes = [Scope(api_base=stack.emulator_url, tenant=TENANT, source_key=key, sync_id="") for key in keys]
    with temporary_settings(
        updates={PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: stack.auth_string}
    ):
        return await ensure_source_limits(scopes)


def one_stack(
    k: int, n: int, limit: int, work: Path, floor: bool, again: bool, onboarded: bool
) -> tuple[list[Figures], float]:
    from tests.stack_harness import StackConfig
    from tests.stack_harness import StackHarness as Stack

    root = Path(tempfile.mkdtemp(prefix=f"bench-k{k}-", dir=REPO / "var"))
    config_file = root / "emulator.json"
    config_file.write_text(json.dumps(emulator_config(root, 20.0, [])))
    config = StackConfig(
        root=root,
        workers=k,
        server_port=0,
        emulator_port=0,
        durable=False,
        ui=False,
        worker_limit=1,
        worker_poll_seconds=2.0,
        api_limit=limit,
        emulator_args=("--config", str(config_file)),
        extra_env={"PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    results: list[Figures] = []
    with Stack(config) as stack:
        stack.ensure_api_limit(limit, update=True)
        connectors, keys = asyncio.run(_onboard(stack, n, root))
        print(f"bench.sharded: stack with {k} worker(s) up in {stack.startup_seconds:.0f} s", file=sys.stderr)
        label = "fleet"
        if onboarded:
            began = time.perf_counter()
            made = asyncio.run(_make_slots(stack, keys))
            print(
                f"bench.sharded: {made} source slots made as apply makes them, in "
                f"{time.perf_counter() - began:.1f} s",
                file=sys.stderr,
            )
            label = "fleet after apply"
        results.append(run_fleet(stack, k, n, connectors, limit, label=label))
        if floor:
            results.append(run_floor(stack, n, keys, limit))
        if again:
            # A tenant's every later fleet: the sources' slots exist since the first one held them. Without
            # the first run's history, so that it is compared with the same floor.
            histories = list(root.rglob("run-history*.json"))
            for history in histories:
                history.unlink()
            print(f"bench.sharded: {len(histories)} run history file(s) deleted", file=sys.stderr)
            results.append(run_fleet(stack, k, n, connectors, limit, label="fleet again"))
        startup = stack.startup_seconds
    shutil.rmtree(root, ignore_errors=True)
    return results, startup


def render(rows: list[Figures], limit: int, seconds: float) -> str:
    n = rows[0].n
    floor = next((r for r in rows if r.label == "floor script"), None)
    lines = [
        f"Fleet of {n} sources on the stack (PostgreSQL + Prefect server + emulator + process workers, "
        f"`--limit 1` each): durations 1-20 s, 20 ms per API call, no run history, "
        f"global concurrency limit {limit} (split between shards), Prefect logs at WARNING",
        "",
        "| figure | " + " | ".join(r.label for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]

    def row(name: str, cells: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("makespan (s)", [f"{r.makespan:.1f}" for r in rows])
    if floor is not None:
        row("makespan / floor", [f"{r.makespan / floor.makespan:.2f}" for r in rows])
    row("API calls per second", [f"{r.calls / r.makespan:.1f}" for r in rows])
    row("API calls per source", [f"{r.calls / n:.2f}" for r in rows])
    row(
        "orchestration CPU per source (ms): workers + server & PostgreSQL + parent",
        [
            f"{1000 * r.cpu_total / n:.1f}"
            + (
                f" ({1000 * r.cpu['workers'] / n:.1f} + {1000 * r.cpu['server'] / n:.1f} + "
                f"{1000 * r.cpu['parent'] / n:.1f})"
                if "workers" in r.cpu
                else " (script)"
            )
            for r in rows
        ],
    )
    if floor is not None:
        row("CPU per source / floor's", [f"{r.cpu_total / floor.cpu_total:.1f}" for r in rows])
    row(
        "peak RSS of a worker + its flow run (MB)",
        [f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb else "" for r in rows],
    )
    row("failed sources", [str(r.failed) + (f" ({r.note})" if r.failed else "") for r in rows])
    lines += ["", f"Bench wall time: {seconds:.0f} s"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sharded", description=__doc__)
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "200")), help="fleet size")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--limit", type=int, default=50, help="Splendor calls in flight, across workers")
    parser.add_argument(
        "--again",
        action="store_true",
        help="run each fleet a second time on its stack (its sources' slots then exist, as for every fleet "
        "of a tenant after its first)",
    )
    parser.add_argument(
        "--onboarded",
        action="store_true",
        help="make the sources' slots before the first fleet, as `apply` does for the sources of its file "
        "(without it, the first fleet is over sources nothing onboarded, and creates them)",
    )
    parser.add_argument("--parent", help=argparse.SUPPRESS)  # internal: run one parent, JSON parameters
    args = parser.parse_args()
    if args.parent:
        return parent(json.loads(args.parent))
    counts = [int(x) for x in args.workers.split(",")]
    started = time.perf_counter()
    (REPO / "var").mkdir(exist_ok=True)
    # The parent of k > 1 runs in this process: its Prefect settings come from the environment.
    os.environ.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false", SPLENDOR_TENANT_ID=TENANT, SPLENDOR_TOKEN=TOKEN
    )
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="splendor-bench-sharded-") as tmp:
        os.environ["PREFECT_HOME"] = str(Path(tmp) / "home")
        os.environ["SPLENDOR_RUN_HISTORY"] = str(Path(tmp) / "run-history.json")
        for index, k in enumerate(counts):
            figures, _ = one_stack(
                k, args.n, args.limit, Path(tmp), floor=index == 0, again=args.again, onboarded=args.onboarded
            )
            rows.extend(figures)
            print(render(rows, args.limit, time.perf_counter() - started), file=sys.stderr)
    print(render(rows, args.limit, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
