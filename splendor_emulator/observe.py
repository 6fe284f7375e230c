"""Request counters per route template and the log of mutating calls, so tests can prove what a resumed
pipeline did and did not call."""

import threading
import time
from collections import Counter, deque
from typing import Any

# Enough for a 1,000-source fleet run several times over; older entries fall off rather than grow without
# bound.
MUTATION_LOG_LIMIT = 200_000


class Observer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._mutations: deque[dict[str, Any]] = deque(maxlen=MUTATION_LOG_LIMIT)

    def count(self, route_key: str) -> None:
        with self._lock:
            self._counts[route_key] += 1

    def record_mutation(
        self,
        *,
        tenant: str | None,
        method: str,
        route: str,
        path: str,
        path_params: dict[str, Any],
        status: int | None,
        fault: str | None,
        dropped: bool,
    ) -> None:
        entry = {
            "ts": time.time(),
            "tenant": tenant,
            "method": method,
            "route": route,
            "path": path,
            "path_params": path_params,
            "status": status,
            "fault": fault,
            "dropped": dropped,
        }
        with self._lock:
            self._mutations.append(entry)

    def counts(self, route: str | None = None) -> dict[str, int]:
        with self._lock:
            if route is None:
                return dict(self._counts)
            return {k: v for k, v in self._counts.items() if k == route or k.split(" ", 1)[-1] == route}

    def mutations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._mutations]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._mutations.clear()
