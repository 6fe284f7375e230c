"""Checkpoint payloads: what each step returns and Prefect persists as JSON.

They hold ids, statuses and counts: never a token or a connector credential.
"""

from datetime import datetime

from pydantic import BaseModel


class ProviderInfo(BaseModel):
    provider_key: str
    name: str
    auth_mode: str
    oauth_mode: str
    source_definition_id: str | None
    default_streams: list[str]
    streams: list[str]


class SourceRef(BaseModel):
    source_id: int
    source_key: str
    created: bool
    updated_fields: list[str] = []


class CredentialState(BaseModel):
    source_id: int
    credential_status: str
    provisioned: bool


class OAuthStart(BaseModel):
    source_id: int
    consent_url: str | None
    credential_status: str


class ConnectionRef(BaseModel):
    source_id: int
    connection_id: str
    created: bool


class StartedRun(BaseModel):
    run_id: int
    attempt: int
    attached: bool
    status: str
    # Found in the shared run records: an earlier process of this pipeline sent this start (what a
    # checkpoint would have said, on a worker that has none). `status` is then the run's status when
    # this process looked.
    recorded: bool = False


class FinishedRun(BaseModel):
    run_id: int
    status: str
    records_synced: int | None
    bytes_synced: int | None
    error_message: str | None
    duration_seconds: float | None
    polls: int
    # When the run ended (the API's clock) and when a poll first saw it: the detection latency.
    completed_at: datetime | None = None
    detected_at: datetime | None = None


class IngestResult(BaseModel):
    run_id: int
    ingest_run_ids: list[str]
    statuses: dict[str, str]
    documents: int
    skipped_reason: str | None = None

    def status_text(self) -> str:
        """One line for summaries: the statuses of the ingest runs, or why there are none."""
        if self.skipped_reason:
            return f"skipped ({self.skipped_reason})"
        return ", ".join(sorted(set(self.statuses.values()))) or "enqueued"


class SyncOutcome(BaseModel):
    """What one sync → ingest pass of a source ended with."""

    run: FinishedRun
    attempts: list[FinishedRun]
    ingest: IngestResult | None
    zero_records: bool
    # A step came back from a checkpoint, or the run was one started elsewhere (attached).
    resumed: bool = False
    # Refresh calls made by this pass (checkpointed waits cost none).
    polls: int = 0

    def warnings(self) -> list[str]:
        return [f"run {self.run.run_id} succeeded with 0 records"] if self.zero_records else []
