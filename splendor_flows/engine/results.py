"""Checkpoint payloads: what each step returns and Prefect persists as JSON.

They hold ids, statuses and counts: never a token or a connector credential.
"""

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


class FinishedRun(BaseModel):
    run_id: int
    status: str
    records_synced: int | None
    bytes_synced: int | None
    error_message: str | None
    duration_seconds: float | None
    polls: int


class IngestResult(BaseModel):
    run_id: int
    ingest_run_ids: list[str]
    statuses: dict[str, str]
    documents: int
    skipped_reason: str | None = None
