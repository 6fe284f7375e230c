"""The soak loop: feed pipelines to worker processes while faults, crashes and restarts happen.

Each pipeline is two phases, `connect` (connect_source: onboarding plus first sync) and then `sync`
(sync_source, a new sync_id). A phase that fails or whose process is killed is resumed in a new
process with the same sync_id, as an operator would: after a kill always, after a failure up to
`max_resumes` times, and never after a permanent failure (the pipeline asked for a fix first).
"""

import contextlib
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from soak.faults import FaultLedger, FaultPlan
from soak.invariants import Findings, check, failed_where
from soak.jobs import FINAL_ERRORS, SECRET_BLOCK, Job, Report
from soak.pool import Pool
from soak.procs import EmulatorProcess, prefect_env, prefect_server

REPO = Path(__file__).resolve().parents[1]
TENANT = "acme"


@dataclass
class SoakConfig:
    pipelines: int = 200
    workers: int = 3
    batch: int = 10
    concurrency: int = 6
    seed: int = 7
    sync_seconds: float = 5.0
    ingest_seconds: float = 0.05
    read_timeout: float = 2.0
    max_attempts: int = 6
    max_retry_seconds: float = 12.0
    fault_scale: float = 1.25
    kill_every: float = 10.0
    # Stop killing after this many kills (0: never stop). Each kill holds its pipelines' sources until
    # the dead holder's slot comes back (up to 75 s, orchestration/source_lock), so kills that keep coming
    # more often than that can postpone the end of a small soak again and again.
    max_kills: int = 0
    restart_every: float = 30.0
    max_resumes: int = 6
    time_limit: float = 1800.0
    keep: bool = False
    # Empty: start a throwaway `prefect server start`; else use this API (the short soak in tests).
    api_url: str = ""
    canary_credential: str = "canary-cred-soak"
    # Every resume runs as if on another machine: the shared result storage is wiped first, so only
    # what Splendor and the Prefect API hold can steer it.
    drop_checkpoints: bool = False
    # Sabotage, to prove the invariants can fail: also forget the pipelines' run records kept in the
    # Prefect API, leaving a resume nothing to know its run by.
    drop_run_records: bool = False


@dataclass
class SoakResult:
    config: SoakConfig
    pipelines: int
    phases_done: int
    phases_failed: int
    resumes: int
    resumes_after_kill: int
    resumes_after_failure: int
    kills: int
    emulator_restarts: int
    faults: Counter[str]
    findings: Findings
    wall_seconds: float
    prefect_startup: float
    emulator_startup: float
    workdir: Path
    failures_by_step: Counter[str] = field(default_factory=Counter)


def _save_secret(api_url: str, credential: str) -> None:
    """Connector credentials for every soak source, in a Secret block on the soak's Prefect API."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        Secret(
            value={"api_key": f"sk_test_{credential}", "account_id": "acct_soak", "start_date": "2026-01-01"}
        ).save(SECRET_BLOCK, overwrite=True)


@contextlib.contextmanager
def prefect_api(config: "SoakConfig", home: Path, results: Path, log: Path) -> Iterator[tuple[str, float]]:
    """The given API (a test harness already running), or a throwaway `prefect server start`."""
    if config.api_url:
        yield config.api_url, 0.0
        return
    with prefect_server(home, results, log) as started:
        yield started


def forget_state(results: Path, api_url: str | None) -> None:
    """Wipe every checkpoint (and, given the API, every pipeline run record) before resumes start."""
    for item in results.glob("*"):
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
    if api_url is not None:
        from splendor_flows.orchestration.run_records import forget_all_run_records

        forget_all_run_records(api_url)


def run_soak(config: SoakConfig) -> SoakResult:
    rng = random.Random(config.seed)
    workdir = Path(tempfile.mkdtemp(prefix="splendor-soak-"))
    home, results = workdir / "prefect-home", workdir / "results"
    began = time.monotonic()
    tag = f"{config.seed}-{int(time.time()) % 100000}"
    keys = {i: f"soak-{tag}-{i:04d}" for i in range(config.pipelines)}
    plan = FaultPlan(
        read_timeout=config.read_timeout, sync_seconds=config.sync_seconds, scale=config.fault_scale
    )
    ledger = FaultLedger()
    emulator = EmulatorProcess(workdir, config.sync_seconds, config.ingest_seconds, None)
    try:
        with prefect_api(config, home, results, workdir / "prefect-server.log") as (api_url, prefect_startup):
            _save_secret(api_url, config.canary_credential)
            emulator.start()

            def arm() -> None:
                for spec in plan.standing():
                    ledger.add(emulator.add_fault(spec), spec)

            arm()
            env = {
                **os.environ,
                **prefect_env(home, results, api_url),
                "PYTHONPATH": str(REPO),
                "SPLENDOR_API_BASE": emulator.base_url,
                "SPLENDOR_TENANT_ID": TENANT,
                "SPLENDOR_TOKEN": "acme-admin-token",
                "SPLENDOR_MAX_ATTEMPTS": str(config.max_attempts),
                "SPLENDOR_MAX_RETRY_SECONDS": str(config.max_retry_seconds),
                "SPLENDOR_READ_TIMEOUT": str(config.read_timeout),
            }
            pool = Pool(workdir, env, config.workers, config.batch, config.concurrency)
            for i, source_key in keys.items():
                pool.queue.append(
                    Job(pipeline=i, source_key=source_key, phase="connect", sync_id=f"{source_key}-connect")
                )
            finals: dict[tuple[int, str], Report] = {}
            resumes: Counter[tuple[int, str]] = Counter()
            # Only resumes after a failure count against max_resumes: kills are the soak's doing.
            failure_resumes: Counter[tuple[int, str]] = Counter()
            resumes_after_kill = resumes_after_failure = 0
            next_look = next_kill = next_restart = time.monotonic()
            next_kill += rng.expovariate(1 / config.kill_every)
            timed_out = False
            next_restart += config.restart_every
            while True:
                new, interrupted, unstarted = pool.collect()
                for report in new:
                    key = (report.pipeline, report.phase)
                    finals[key] = report
                    if report.event == "done" and report.phase == "connect":
                        pool.queue.append(
                            Job(
                                pipeline=report.pipeline,
                                source_key=report.source_key,
                                phase="sync",
                                sync_id=f"{report.source_key}-sync",
                            )
                        )
                    elif (
                        report.event == "failed"
                        and report.error_type not in FINAL_ERRORS
                        and failure_resumes[key] < config.max_resumes
                    ):
                        failure_resumes[key] += 1
                        resumes[key] += 1
                        resumes_after_failure += 1
                        pool.queue.append(
                            Job(
                                **(report.model_dump(include={"pipeline", "source_key", "phase", "sync_id"})),
                                resume=resumes[key],
                            )
                        )
                resuming = interrupted or any(r.event == "failed" for r in new)
                if resuming and (config.drop_checkpoints or config.drop_run_records):
                    forget_state(results, api_url if config.drop_run_records else None)
                for job in interrupted:
                    key = (job.pipeline, job.phase)
                    resumes[key] += 1
                    resumes_after_kill += 1
                    pool.queue.append(job.model_copy(update={"resume": resumes[key]}))
                pool.queue.extend(unstarted)
                if not pool.queue and not pool.workers:
                    break
                if time.monotonic() - began > config.time_limit:
                    timed_out = True
                    break
                pool.fill()
                now = time.monotonic()
                if now >= next_look:
                    ledger.observe(emulator.faults())
                    next_look = now + 1.0
                if now >= next_kill and (not config.max_kills or pool.kills < config.max_kills):
                    pool.kill_one(rng, min_age=3.0)
                    next_kill = now + rng.expovariate(1 / config.kill_every)
                if now >= next_restart:
                    ledger.crash(emulator.faults())
                    emulator.crash_and_restart()
                    arm()
                    next_restart = now + config.restart_every * rng.uniform(0.6, 1.4)
                time.sleep(0.3)
            pool.stop()
            ledger.crash(emulator.faults())
            # Let runs started by killed processes finish so the state shows their final status.
            time.sleep(config.sync_seconds * 2)
            state = emulator.state_snapshot(TENANT)
            expected = {
                i: ["connect", "sync"]
                if finals.get((i, "connect")) is None or finals[(i, "connect")].event == "done"
                else ["connect"]
                for i in keys
            }
            findings = check(state, pool.reports, finals, expected, dict(failure_resumes), config.max_resumes)
            if timed_out:
                # Said first: the pipelines still in flight then also show up as runs nobody reported.
                running = sum(
                    1
                    for pipeline, phases in expected.items()
                    for phase in phases
                    if (end := finals.get((pipeline, phase))) is None or end.event == "start"
                )
                findings.violations.insert(
                    0,
                    f"time limit: stopped after {config.time_limit:.0f} s with {running} phase(s) not "
                    "ended (the findings below may only be pipelines still in flight)",
                )
            (workdir / "findings.json").write_text(
                json.dumps({"violations": findings.violations, "state": state}, indent=1)
            )
            failures = Counter(failed_where(r) for r in pool.reports if r.event == "failed")
            return SoakResult(
                config=config,
                pipelines=config.pipelines,
                phases_done=sum(1 for r in finals.values() if r.event == "done"),
                phases_failed=sum(1 for r in finals.values() if r.event == "failed"),
                resumes=sum(resumes.values()),
                resumes_after_kill=resumes_after_kill,
                resumes_after_failure=resumes_after_failure,
                kills=pool.kills,
                emulator_restarts=emulator.restarts,
                faults=ledger.fired,
                findings=findings,
                wall_seconds=time.monotonic() - began,
                prefect_startup=prefect_startup,
                emulator_startup=max(emulator.startup_seconds or [0.0]),
                workdir=workdir,
                failures_by_step=failures,
            )
    finally:
        emulator.close()
        if not config.keep:
            shutil.rmtree(workdir, ignore_errors=True)
