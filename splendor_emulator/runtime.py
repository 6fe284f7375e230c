"""The running emulator's shared state: config, store, faults, observer and the clock."""

import secrets
import time
from pathlib import Path
from typing import Any

from splendor_emulator.config import EmulatorConfig, ProviderConfig
from splendor_emulator.errors import not_found
from splendor_emulator.faults import FaultRegistry
from splendor_emulator.observe import Observer
from splendor_emulator.runs import TERMINAL_RUN_STATUSES, land_run, view_run
from splendor_emulator.store import IngestRec, RunRec, SourceRec, Store, UploadRec


def new_id(prefix: str) -> str:
    """ULID-looking ids ("ing_01J...") that sort roughly by creation time."""
    millis = int(time.time() * 1000)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    stamp = ""
    for _ in range(10):
        stamp = alphabet[millis % 32] + stamp
        millis //= 32
    return f"{prefix}_{stamp}{''.join(secrets.choice(alphabet) for _ in range(10))}"


class Runtime:
    def __init__(self, config: EmulatorConfig, store: Store) -> None:
        if config.bucket_root is None:
            raise ValueError("config.bucket_root must be set before the runtime starts")
        self.config = config
        self.store = store
        self.bucket_root: Path = config.bucket_root
        self.bucket_root.mkdir(parents=True, exist_ok=True)
        self.faults = FaultRegistry()
        for spec in config.faults:
            self.faults.add(spec)
        self.observer = Observer()
        self._providers = {p.provider_key: p for p in config.providers}
        self._definitions = {p.source_definition_id: p for p in config.providers}
        # Runs by source, so "is a run in flight?" does not scan every run of a 1,000-source fleet.
        self._runs_by_source: dict[int, list[int]] = {}
        # (tenant, source_key) → source_id: create-source checks and every upload/log call look keys up.
        self._source_keys: dict[tuple[str, str], int] = {
            (src.tenant_id, src.source_key): src.source_id for src in store.all(SourceRec)
        }
        # Runs not yet seen terminal: the only ones the background tick has to look at.
        self._unsettled: set[int] = set()
        for run in store.all(RunRec):
            self._runs_by_source.setdefault(run.source_id, []).append(run.run_id)
            if not run.landed:
                self._unsettled.add(run.run_id)

    @staticmethod
    def now() -> float:
        return time.time()

    # --- catalog ------------------------------------------------------------------------------------------

    def provider(self, provider_key: str) -> ProviderConfig | None:
        return self._providers.get(provider_key)

    def definition(self, source_definition_id: str) -> ProviderConfig | None:
        return self._definitions.get(source_definition_id)

    def providers(self) -> list[ProviderConfig]:
        return list(self._providers.values())

    def provider_of(self, source: SourceRec) -> ProviderConfig:
        assert source.airbyte is not None
        provider = self._providers.get(source.airbyte.provider_key)
        if provider is None:  # the catalog changed between restarts
            raise not_found(f"Provider {source.airbyte.provider_key}")
        return provider

    # --- tenant-scoped lookups (another tenant's ids are simply "not found") --------------------------------

    def source(self, tenant: str, source_id: int) -> SourceRec:
        rec = self.store.get(SourceRec, source_id)
        if rec is None or rec.tenant_id != tenant:
            raise not_found("Source")
        return rec

    def airbyte_source(self, tenant: str, source_id: int) -> SourceRec:
        rec = self.source(tenant, source_id)
        if rec.airbyte is None:
            raise not_found("Airbyte source")
        return rec

    def source_by_key(self, tenant: str, source_key: str) -> SourceRec | None:
        source_id = self._source_keys.get((tenant, source_key))
        return self.store.get(SourceRec, source_id) if source_id is not None else None

    def add_source(self, src: SourceRec) -> None:
        """Store a new source (source keys never change afterwards, so the key index stays right)."""
        with self.store.lock:
            self.store.put(src)
            self._source_keys[(src.tenant_id, src.source_key)] = src.source_id

    def run(self, tenant: str, run_id: int) -> RunRec:
        rec = self.store.get(RunRec, run_id)
        if rec is None or rec.tenant_id != tenant:
            raise not_found("Run")
        return rec

    def ingest_run(self, tenant: str, ingest_run_id: str) -> IngestRec:
        rec = self.store.get(IngestRec, ingest_run_id)
        if rec is None or rec.tenant_id != tenant:
            raise not_found("Ingest run")
        return rec

    def upload(self, tenant: str, upload_session_id: str) -> UploadRec:
        rec = self.store.get(UploadRec, upload_session_id)
        if rec is None or rec.tenant_id != tenant:
            raise not_found("Upload session")
        return rec

    # --- time -----------------------------------------------------------------------------------------------

    def settle(self, run: RunRec) -> None:
        """Make the files of a run that has just succeeded exist before anyone sees it as succeeded."""
        if run.landed:
            return
        with self.store.lock:
            if view_run(run, self.now()).status == "succeeded":
                source = self.store.get(SourceRec, run.source_id)
                if source is not None and source.airbyte is not None:
                    land_run(run, source, self.provider_of(source), self.config, self.store)

    def tick(self) -> None:
        """Background pass: land finished runs even if nobody polls them."""
        now = self.now()
        with self.store.lock:
            pending = list(self._unsettled)
        for run_id in pending:
            run = self.store.get(RunRec, run_id)
            if run is None or view_run(run, now).status in TERMINAL_RUN_STATUSES:
                if run is not None:
                    self.settle(run)
                with self.store.lock:
                    self._unsettled.discard(run_id)

    def add_run(self, run: RunRec) -> None:
        with self.store.lock:
            self.store.put(run)
            self._runs_by_source.setdefault(run.source_id, []).append(run.run_id)
            self._unsettled.add(run.run_id)

    def runs_of(self, source_id: int) -> list[RunRec]:
        with self.store.lock:
            ids = list(self._runs_by_source.get(source_id, []))
        found = (self.store.get(RunRec, i) for i in ids)
        return [r for r in found if r is not None]

    def active_run(self, source_id: int) -> RunRec | None:
        now = self.now()
        for run in self.runs_of(source_id):
            if view_run(run, now).status not in TERMINAL_RUN_STATUSES:
                return run
        return None

    # --- state snapshots for invariant checks ---------------------------------------------------------------

    def snapshot(self, tenant: str | None = None) -> dict[str, Any]:
        from splendor_emulator.views import ingest_item, run_item, source_snapshot

        now = self.now()
        tenants = [tenant] if tenant else [t.tenant_id for t in self.config.tenants]
        out: dict[str, Any] = {}
        for tid in tenants:
            runs = [r for r in self.store.all(RunRec) if r.tenant_id == tid]
            for run in runs:
                self.settle(run)
            out[tid] = {
                "sources": [source_snapshot(s) for s in self.store.all(SourceRec) if s.tenant_id == tid],
                "runs": [
                    run_item(r, now).model_dump(mode="json") | {"files": [f.model_dump() for f in r.files]}
                    for r in runs
                ],
                "ingest_runs": [
                    ingest_item(i, now).model_dump(mode="json")
                    for i in self.store.all(IngestRec)
                    if i.tenant_id == tid
                ],
                "uploads": [
                    {**u.model_dump(mode="json", exclude={"parts"}), "parts": sorted(u.parts)}
                    for u in self.store.all(UploadRec)
                    if u.tenant_id == tid
                ],
            }
        return out
