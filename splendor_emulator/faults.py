"""Fault injection: the spec model, its CLI form and the registry that hands faults out.

HTTP faults (`unavailable`, `bad_gateway`, `server_error`, `latency`, `hang`, `drop_after`) are applied by
the middleware around a route; run faults (`run_fail`, `run_incomplete`, `run_zero_records`, `ingest_fail`)
are taken when a connector run or an ingest run is planned. A fault with a `count` is used up after that
many hits."""

import fnmatch
import itertools
import json
import random
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

HttpFaultKind = Literal["unavailable", "bad_gateway", "server_error", "latency", "hang", "drop_after"]
RunFaultKind = Literal["run_fail", "run_incomplete", "run_zero_records", "ingest_fail"]
FaultKind = Literal[HttpFaultKind, RunFaultKind]
IngestErrorCode = Literal["parse_failed", "unsupported_format"]

HTTP_KINDS: frozenset[str] = frozenset(
    ("unavailable", "bad_gateway", "server_error", "latency", "hang", "drop_after")
)
RUN_KINDS: frozenset[str] = frozenset(("run_fail", "run_incomplete", "run_zero_records", "ingest_fail"))


class FaultSpec(BaseModel):
    """One fault. `route` is `"*"`, an exact `"METHOD /route/template"`, a bare template (any method), or a
    glob over `"METHOD /template"` such as `"POST /v1/admin/*"`."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    route: str = "*"
    tenant: str | None = None
    count: int | None = Field(default=None, ge=1, description="Apply to the next N matches; null = forever.")
    rate: float = Field(default=1.0, ge=0, le=1, description="Probability that a match triggers.")
    retry_after: str | None = Field(
        default="1",
        description="unavailable: Retry-After seconds, or 'http-date' for a date retry_after_seconds ahead.",
    )
    retry_after_seconds: float = Field(default=1.0, ge=0)
    seconds: float = Field(default=1.0, ge=0, le=3600, description="latency/hang: how long to wait.")
    source_key: str | None = Field(default=None, description="Run faults: only runs of this source.")
    times: int = Field(default=1, ge=1, le=50, description="run_incomplete: how many incomplete attempts.")
    error_message: str | None = None
    echo_request: bool = Field(
        default=False,
        description="unavailable/bad_gateway/server_error: the error detail quotes the refused request "
        "(its Authorization header and body), as a verbose gateway's error page might. For secret audits.",
    )
    ingest_error: IngestErrorCode = Field(
        default="parse_failed",
        description="ingest_fail: the error code; parse_failed can be repaired, unsupported_format cannot.",
    )

    @field_validator("retry_after")
    @classmethod
    def _retry_after_shape(cls, value: str | None) -> str | None:
        if value is None or value == "http-date":
            return value
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError("retry_after is a number of seconds or 'http-date'") from None
        if seconds < 0:
            raise ValueError("retry_after must not be negative")
        return value

    def matches_route(self, route_key: str) -> bool:
        if self.route in ("*", route_key):
            return True
        if self.route.startswith("/"):
            return fnmatch.fnmatchcase(route_key.split(" ", 1)[-1], self.route)
        return fnmatch.fnmatchcase(route_key, self.route)


class ActiveFault(BaseModel):
    fault_id: int
    spec: FaultSpec
    remaining: int | None
    hits: int = 0


_FIELD_ALIASES = {"retry-after": "retry_after", "source": "source_key", "n": "count"}


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse the CLI form `KIND[:ROUTE][:key=value]...`, e.g. `unavailable:POST /v1/admin/airbyte-
    sources:count=3:retry_after=1` or `run_fail:*:source_key=stripe`."""
    parts = text.split(":")
    data: dict[str, Any] = {"kind": parts[0].strip()}
    rest = parts[1:]
    if rest and "=" not in rest[0]:
        route = rest.pop(0).strip()
        if route:
            data["route"] = route
    for item in rest:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault option {item!r} is not key=value")
        name = key.strip().replace("-", "_")
        name = _FIELD_ALIASES.get(key.strip(), name)
        data[name] = None if value.strip() in ("null", "none") else value.strip()
    return FaultSpec.model_validate(data)


def load_fault_file(path: Path) -> list[FaultSpec]:
    raw = json.loads(path.read_text())
    items = raw.get("faults", []) if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of fault specs or {{'faults': [...]}}")
    return [FaultSpec.model_validate(item) for item in items]


class FaultRegistry:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[ActiveFault] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)

    def add(self, spec: FaultSpec | dict[str, Any]) -> ActiveFault:
        if not isinstance(spec, FaultSpec):
            spec = FaultSpec.model_validate(spec)
        fault = ActiveFault(fault_id=next(self._ids), spec=spec, remaining=spec.count)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[ActiveFault]:
        with self._lock:
            return [f.model_copy() for f in self._faults]

    def _take(self, predicate: Any) -> FaultSpec | None:
        with self._lock:
            for fault in self._faults:
                if not predicate(fault.spec):
                    continue
                if fault.spec.rate < 1 and self._random.random() >= fault.spec.rate:
                    continue
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault.spec
        return None

    def take_http(self, route_key: str, tenant: str | None) -> FaultSpec | None:
        return self._take(
            lambda s: (
                s.kind in HTTP_KINDS
                and (s.tenant is None or s.tenant == tenant)
                and s.matches_route(route_key)
            )
        )

    def take_ingest_error(self, tenant: str, source_key: str) -> str | None:
        """The error code the next ingest run of this source fails with, or None when it succeeds."""
        fault = self.take_run("ingest_fail", tenant, source_key)
        return fault.ingest_error if fault is not None else None

    def take_run(self, kind: str, tenant: str, source_key: str) -> FaultSpec | None:
        return self._take(
            lambda s: (
                s.kind == kind
                and (s.tenant is None or s.tenant == tenant)
                and (s.source_key is None or s.source_key == source_key)
            )
        )


def validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
