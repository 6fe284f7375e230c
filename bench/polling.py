"""Polling one ~60 s run: our policy against fixed clocks, in real time against the emulator.

Every policy polls its own copy of the same runs at the same moment (one source per policy and
sample, durations 60 s ± 10 %), so the comparison is paired. "History" is five earlier durations
drawn from the same spread, as the fleet would have learnt them.
"""

import asyncio
import random
import statistics
import time
from dataclasses import dataclass

from bench.floor import TERMINAL, Api, _age, _ts
from splendor_flows.engine.polling import Expectation, PollOptions, PollPlan

POLICIES = ["ours, with history", "ours, no history", "fixed 2 s", "fixed 10 s", "fixed 15 s", "fixed 60 s"]
SAMPLES = 8


def durations(seed: int = 11) -> list[float]:
    rng = random.Random(seed)
    return [round(60 * (1 + rng.uniform(-0.1, 0.1)), 2) for _ in range(SAMPLES)]


def histories(seed: int = 12) -> list[list[float]]:
    rng = random.Random(seed)
    return [[60 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(5)] for _ in range(SAMPLES)]


@dataclass
class PolicyResult:
    policy: str
    calls: list[int]
    latency: list[float]

    def row(self) -> tuple[str, str, str]:
        calls = f"{statistics.median(self.calls):g} (max {max(self.calls)})"
        lat = sorted(self.latency)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return self.policy, calls, f"{statistics.median(lat):.2f} s / {p95:.2f} s"


async def _poll(api: Api, source_id: int, policy: str, history: list[float]) -> tuple[int, float]:
    run = await api.call("start_sync", {"trigger": "manual"}, source_id=source_id)
    plan = None
    if policy.startswith("ours"):
        expected = Expectation.from_durations(history) if "with" in policy else None
        plan = PollPlan(PollOptions(), expected)
    calls = 0
    while run["status"] not in TERMINAL:
        delay = plan.delay(_age(run)) if plan else float(policy.split()[1])
        await asyncio.sleep(delay)
        run = await api.call("refresh_run", run_id=run["run_id"])
        calls += 1
        if plan:
            plan.observe(run["status"])
    return calls, time.time() - _ts(run["completed_at"])


async def polling_bench(api: Api, source_ids: dict[str, int]) -> list[PolicyResult]:
    past = histories()
    jobs = []
    for p, policy in enumerate(POLICIES):
        for k in range(SAMPLES):
            jobs.append((policy, _poll(api, source_ids[f"poll-{p}-{k}"], policy, past[k])))
    outcomes = await asyncio.gather(*(job for _, job in jobs))
    results = {policy: PolicyResult(policy, [], []) for policy in POLICIES}
    for (policy, _), (calls, latency) in zip(jobs, outcomes, strict=True):
        results[policy].calls.append(calls)
        results[policy].latency.append(latency)
    return list(results.values())
