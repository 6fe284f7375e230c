"""What identifies one pipeline execution and its steps, as the engine needs them."""

from enum import StrEnum
from typing import Protocol


class ScopeLike(Protocol):
    """API, tenant, source and sync_id (the orchestration layer's `Scope` is one).

    Keys, messages and hints are built from it; a resume passes the same sync_id.
    """

    @property
    def api_base(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def source_key(self) -> str: ...

    @property
    def sync_id(self) -> str: ...


class Step(StrEnum):
    """Pipeline steps: task names, checkpoint key parts and the `[step]` of error messages."""

    DISCOVER = "discover"
    CREATE = "create"
    PROVISION = "provision"
    CONNECT = "connect"
    SYNC = "sync"
    POLL = "poll"
    ENQUEUE_INGEST = "enqueue-ingest"
    INGEST_READY = "ingest-ready"
    # Failures of either ingest task read "[ingest] ..." (operators and the soak's checks know that name).
    INGEST = "ingest"
    # Handing the failed ingest runs of a sync to ingestion again (engine.repair).
    REPAIR = "repair"
