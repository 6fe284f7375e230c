"""How long earlier runs of each source took, so polling can aim at the expected end of the next one.

Kept as a small JSON file (SPLENDOR_RUN_HISTORY, else where the caller says: the Prefect layer puts
it under PREFECT_HOME). Reading it costs no API call, which matters when a fleet of 1,000 sources
starts at once. A fleet loads it once, keeps it in memory while it runs and merges its new durations
back at the end. Losing the file only costs
polling precision, never correctness. Workers on several machines each learn their own history
unless the variable points at shared storage.
"""

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from splendor_flows.engine.polling import Expectation

HISTORY_ENV = "SPLENDOR_RUN_HISTORY"
# Recent runs say more about the next one than old ones: data volumes drift.
KEEP = 10


def history_path(default_dir: Path) -> Path:
    """SPLENDOR_RUN_HISTORY when set (e.g. shared storage for several workers), else under `default_dir`."""
    explicit = os.environ.get(HISTORY_ENV)
    return Path(explicit) if explicit else default_dir / "run-history.json"


def run_duration(created_at: datetime | None, completed_at: datetime | None) -> float | None:
    """Seconds from creation to completion, both on the API's clock (local clock skew cancels out)."""
    if created_at is None or completed_at is None:
        return None
    return max(0.0, (completed_at - created_at).total_seconds())


def run_age(created_at: datetime | None, now: datetime) -> float | None:
    """Seconds since the run was created, measured like `run_duration` so the two compare."""
    return run_duration(created_at, now)


class RunHistory:
    """Durations of recent successful runs per (tenant, source_key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._durations: dict[str, list[float]] = {}
        self._new: dict[str, list[float]] = {}

    @staticmethod
    def _key(tenant: str, source_key: str) -> str:
        return f"{tenant}/{source_key}"

    def load(self) -> "RunHistory":
        self._durations = self._read()
        return self

    def durations(self, tenant: str, source_key: str) -> list[float]:
        return list(self._durations.get(self._key(tenant, source_key), []))

    def expectation(self, tenant: str, source_key: str) -> Expectation | None:
        return Expectation.from_durations(self.durations(tenant, source_key))

    def record(self, tenant: str, source_key: str, seconds: float) -> None:
        key = self._key(tenant, source_key)
        self._durations[key] = [*self._durations.get(key, []), seconds][-KEEP:]
        self._new.setdefault(key, []).append(seconds)

    def save(self) -> None:
        """Merge this process's new durations into the file (other processes may have written too)."""
        if not self._new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            merged = self._read()
            for key, values in self._new.items():
                merged[key] = [*merged.get(key, []), *values][-KEEP:]
            handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".run-history-")
            with os.fdopen(handle, "w") as out:
                json.dump({"version": 1, "durations": merged}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        self._durations.update(merged)
        self._new.clear()

    def _read(self) -> dict[str, list[float]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        raw = data.get("durations", {}) if isinstance(data, dict) else {}
        return {
            str(k): [float(x) for x in v if isinstance(x, int | float)][-KEEP:]
            for k, v in raw.items()
            if isinstance(v, list)
        }

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
