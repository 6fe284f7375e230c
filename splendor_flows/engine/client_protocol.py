"""The part of Splendor's client the engine calls. `splendor_api.SplendorClient` is one; tests pass
an in-memory fake."""

from enum import StrEnum
from typing import Protocol

from splendor_api import models


class ConflictCode(StrEnum):
    """The 409 `detail.code` values the engine acts on."""

    SYNC_IN_PROGRESS = "sync_in_progress"
    NO_CONNECTION = "no_connection"
    NO_LANDED_DATA = "no_landed_data"


class SyncApi(Protocol):
    async def start_sync(self, source_id: int, trigger: str = "manual") -> models.ConnectorRun: ...

    async def get_run(self, run_id: int) -> models.ConnectorRun: ...

    async def refresh_run(self, run_id: int) -> models.ConnectorRun: ...

    async def list_runs(self, source_id: int, limit: int = 20) -> list[models.ConnectorRun]: ...

    async def enqueue_ingest(self, source_id: int, run_id: int | None = None) -> list[models.IngestRun]: ...

    async def list_ingest_runs(
        self,
        *,
        source_id: int | None = None,
        dataset_id: str | None = None,
        status: str | None = None,
        include_non_current: bool = False,
    ) -> list[models.IngestRun]: ...

    async def get_ingest_run(self, ingest_run_id: str) -> models.IngestRun: ...
