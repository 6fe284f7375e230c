"""Reliability tests reuse the flow-test harness (Prefect test server, session emulator) and add
helpers that prove "nothing changed remotely"."""

from typing import Any

from splendor_emulator import Emulator
from tests.flows.conftest import (  # noqa: F401  (re-exported fixtures)
    MUTATING,
    emulator,
    prefect_harness,
    source_key,
    splendor_env,
    stripe_secret,
)

# POSTs that only read (discovery, run refresh): the emulator logs them with the mutations.
READ_ONLY_POSTS = frozenset(
    {
        "/v1/admin/connector-providers/{provider_key}/airbyte-discovery",
        "/v1/admin/airbyte-catalog/{source_definition_id}/discover",
        "/v1/admin/airbyte-sources/{source_id}/discover-schema",
        "/v1/admin/airbyte-runs/{run_id}/refresh",
    }
)


class RemoteState:
    """What a tenant looks like in the emulator, minus the clock: compare before and after a case."""

    def __init__(
        self, emu: Emulator, tenants: tuple[str, ...] = ("acme", "globex"), *, attempts: bool = True
    ) -> None:
        """`attempts=False` when refused mutating requests are the point of the test (only what was
        committed must stay the same)."""
        self.emu = emu
        self.tenants = tenants
        self.attempts = attempts
        self.before = self.take()

    def take(self) -> dict[str, Any]:
        counts = self.emu.counts()
        snapshot: dict[str, Any] = {}
        if self.attempts:
            snapshot["mutating_calls"] = {step: counts.get(route, 0) for step, route in MUTATING.items()}
        snapshot |= {
            "committed": sum(
                1
                for m in self.emu.mutations()
                if m["route"] not in READ_ONLY_POSTS and m["status"] is not None and m["status"] < 400
            ),
        }
        for tenant in self.tenants:
            state = self.emu.state(tenant)[tenant]
            snapshot[tenant] = {
                # Whole records: a refused update must not have touched a single field.
                "sources": sorted(state["sources"], key=lambda s: s["source_id"]),
                "runs": sorted(r["run_id"] for r in state["runs"]),
                "ingest_runs": sorted(i["ingest_run_id"] for i in state["ingest_runs"]),
                "uploads": sorted(u["upload_session_id"] for u in state["uploads"]),
            }
        return snapshot

    def assert_unchanged(self) -> None:
        after = self.take()
        assert after == self.before, f"remote state changed:\nbefore {self.before}\nafter  {after}"
