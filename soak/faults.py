"""The fault plan: standing faults that fire at a rate on every request or run, and their ledger.

Rates rather than fixed counts, so the number of faults grows with the traffic (a soak twice as long
sees about twice the faults) and bursts come naturally (a 503 is as likely on the retry as on the
first try). The emulator counts each fault's hits; faults live in its memory, so they are added
again after each crash, and hits between the last read and a crash are not counted: the figures
never overstate what was injected.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

BIG = 1_000_000

# Routes a pipeline calls, as the emulator names them.
READS = [
    "GET /v1/me",
    "GET /v1/admin/connector-providers",
    "POST /v1/admin/connector-providers/{provider_key}/airbyte-discovery",
    "GET /v1/admin/sources",
    "GET /v1/admin/airbyte-sources/{source_id}",
    "POST /v1/admin/airbyte-runs/{run_id}/refresh",
    "GET /v1/admin/airbyte-runs/{run_id}",
    "GET /v1/ingest/runs",
    "GET /v1/ingest/runs/{ingest_run_id}",
]
MUTATIONS = [
    "POST /v1/admin/airbyte-sources",
    "POST /v1/admin/airbyte-sources/{source_id}/provision",
    "POST /v1/admin/airbyte-sources/{source_id}/connection",
    "POST /v1/admin/airbyte-sources/{source_id}/sync",
    "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
]


@dataclass(frozen=True)
class FaultPlan:
    read_timeout: float
    sync_seconds: float
    scale: float = 1.0

    def standing(self) -> list[dict[str, Any]]:
        r = self.scale
        # Past the client's read timeout, yet below the sync duration: a delayed start-sync then lands
        # while the run it raced is still in flight and gets 409, as it would on the live API.
        slow = min(self.read_timeout + 1.0, 0.8 * self.sync_seconds)
        http = [
            {"kind": "unavailable", "route": "*", "rate": 0.02 * r, "retry_after": "1"},
            {"kind": "unavailable", "route": "*", "rate": 0.01 * r, "retry_after": "0"},
            {
                "kind": "unavailable",
                "route": "*",
                "rate": 0.01 * r,
                "retry_after": "http-date",
                "retry_after_seconds": 1.0,
            },
            {"kind": "bad_gateway", "route": "*", "rate": 0.03 * r},
            {"kind": "server_error", "route": "GET *", "rate": 0.005 * r},
            {"kind": "latency", "route": "*", "rate": 0.01 * r, "seconds": slow},
            # Mutating calls: the server commits, then the connection dies before the answer.
            {"kind": "drop_after", "route": "POST /v1/admin/*", "rate": 0.04 * r},
            {"kind": "drop_after", "route": "GET *", "rate": 0.01 * r},
        ]
        runs = [
            {"kind": "run_fail", "rate": min(0.5, 0.12 * r)},
            {"kind": "run_incomplete", "rate": min(0.5, 0.08 * r), "times": 1},
            {"kind": "run_incomplete", "rate": min(0.5, 0.04 * r), "times": 2},
            {"kind": "run_zero_records", "rate": min(0.5, 0.06 * r)},
            {"kind": "ingest_fail", "rate": min(0.5, 0.01 * r)},
        ]
        return [{"count": BIG, **spec} for spec in http + runs]


class FaultLedger:
    """Fired faults by kind, from the hit counters of the emulator's active fault list."""

    def __init__(self) -> None:
        self.kinds: dict[int, str] = {}
        self.hits: dict[int, int] = {}
        self.fired: Counter[str] = Counter()

    def add(self, fault_id: int, spec: dict[str, Any]) -> None:
        self.kinds[fault_id] = spec["kind"]
        self.hits[fault_id] = 0

    def observe(self, active: list[dict[str, Any]]) -> None:
        for fault in active:
            fault_id = int(fault["fault_id"])
            if fault_id in self.kinds:
                self.fired[self.kinds[fault_id]] += int(fault["hits"]) - self.hits[fault_id]
                self.hits[fault_id] = int(fault["hits"])

    def crash(self, active: list[dict[str, Any]]) -> None:
        """Settle before the emulator dies; its successor numbers faults from 1 again."""
        self.observe(active)
        self.kinds.clear()
        self.hits.clear()

    @property
    def total(self) -> int:
        return sum(self.fired.values())
