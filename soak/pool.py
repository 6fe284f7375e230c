"""Worker processes and the bookkeeping of which pipeline phase is where.

A phase is queued, handed to a worker, then either reported (done/failed) or lost with a killed
worker. A lost phase that had started is resumed with the same sync_id; one that had not started is
simply queued again.
"""

import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from soak.jobs import Job, Report, read_reports
from soak.procs import write_json


@dataclass
class Worker:
    number: int
    proc: subprocess.Popen[bytes]
    jobs: list[Job]
    out: Path
    spawned: float
    seen: int = 0
    started: set[tuple[int, str]] = field(default_factory=set)
    finished: set[tuple[int, str]] = field(default_factory=set)

    @property
    def in_flight(self) -> int:
        return len(self.started - self.finished)


class Pool:
    def __init__(self, workdir: Path, env: dict[str, str], size: int, batch: int, concurrency: int) -> None:
        self.workdir = workdir
        self.env = env
        self.size = size
        self.batch = batch
        self.concurrency = concurrency
        self.queue: deque[Job] = deque()
        self.workers: list[Worker] = []
        self.spawned = 0
        self.kills = 0
        self.reports: list[Report] = []

    def fill(self) -> None:
        while self.queue and len(self.workers) < self.size:
            jobs = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
            self.spawned += 1
            number = self.spawned
            job_file = write_json(self.workdir / f"jobs-{number}.json", [j.model_dump() for j in jobs])
            out = self.workdir / f"reports-{number}.jsonl"
            with (self.workdir / f"worker-{number}.log").open("ab") as sink:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "soak.worker",
                        "--jobs",
                        str(job_file),
                        "--out",
                        str(out),
                        "--concurrency",
                        str(self.concurrency),
                    ],
                    env=self.env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            self.workers.append(Worker(number, proc, jobs, out, time.monotonic()))

    def collect(self) -> tuple[list[Report], list[Job], list[Job]]:
        """New reports, plus the jobs of workers that exited: (reports, interrupted, never started)."""
        new: list[Report] = []
        interrupted: list[Job] = []
        unstarted: list[Job] = []
        for worker in list(self.workers):
            exited = worker.proc.poll() is not None
            lines = read_reports(worker.out)
            for report in lines[worker.seen :]:
                key = (report.pipeline, report.phase)
                if report.event == "start":
                    worker.started.add(key)
                else:
                    worker.finished.add(key)
                    new.append(report)
                self.reports.append(report)
            worker.seen = len(lines)
            if exited:
                self.workers.remove(worker)
                for job in worker.jobs:
                    key = (job.pipeline, job.phase)
                    if key in worker.finished:
                        continue
                    (interrupted if key in worker.started else unstarted).append(job)
        return new, interrupted, unstarted

    def kill_one(self, rng: random.Random, min_age: float) -> bool:
        """SIGKILL a worker that is in the middle of pipelines (the realistic crash)."""
        now = time.monotonic()
        candidates = [w for w in self.workers if w.in_flight and now - w.spawned >= min_age]
        if not candidates:
            return False
        victim = rng.choice(candidates)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        self.kills += 1
        return True

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait(timeout=10)
