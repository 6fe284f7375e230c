"""`make bench-status` / `python -m bench.status [--n N]`: `splendor-flows status` on a tenant of N sources.

Processes: this one (it onboards the tenant), the emulator at its default latency, a `prefect server
start` with its database in a temp dir (the command reads the `sync-scheduled` deployment, its schedules
and the paused runs there) and the command itself, started as a user starts it: a new process, Prefect's
import included. Prints the command's wall and CPU time (median of `--repeat` runs) and its API calls,
beside the target (docs/status.md).
"""

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.seed import TENANT, TOKEN, bench_spec, onboard_at

TARGET_SECONDS = 30.0
CLI = Path(sys.executable).with_name("splendor-flows")


def _run_status(env: dict[str, str]) -> tuple[float, float, dict[str, object]]:
    """One `splendor-flows status --json`: its wall seconds, CPU seconds and report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(CLI), "status", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"status exited {done.returncode}: {done.stdout}{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="connected sources (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the command (default 3)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-status-") as scratch:
        work = Path(scratch)
        emulator_config = {"bucket_root": str(work / "buckets")}
        with (
            procs.emulator_process(emulator_config, work) as emu,
            procs.prefect_server(work / "prefect-home") as (api_url, _server),
        ):
            asyncio.run(onboard_at(emu.base_url, [bench_spec(i) for i in range(args.n)]))
            env = os.environ | {
                "PREFECT_API_URL": api_url,
                "PREFECT_HOME": str(work / "cli-home"),
                "SPLENDOR_API_BASE": emu.base_url,
                "SPLENDOR_TENANT_ID": TENANT,
                "SPLENDOR_TOKEN": TOKEN,
            }
            walls, cpus = [], []
            for _ in range(args.repeat):
                emu.reset_counters()
                wall, cpu, report = _run_status(env)
                if report.get("sources") != args.n:
                    raise SystemExit(f"status saw {report.get('sources')} sources, not {args.n}")
                walls.append(wall)
                cpus.append(cpu)
            calls = sum(emu.counts().values())

    wall = statistics.median(walls)
    print(f"splendor-flows status, {args.n} connected sources, median of {args.repeat} runs")
    verdict = "met" if wall <= TARGET_SECONDS else "MISSED"
    print(f"  wall        {wall:6.1f} s   (target <= {TARGET_SECONDS:.0f} s: {verdict})")
    print(
        f"  CPU         {statistics.median(cpus):6.1f} s   (the command's process, Prefect's import included)"
    )
    print(f"  API calls   {calls:6d}     (2 + 2N = {2 + 2 * args.n} expected)")
    print(f"  loadavg     {os.getloadavg()[0]:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
