"""Request and response schemas of the emulated API, written from the contract (splendor-api.md §0, §3, §4,
§7, §8).

They drive both validation (422 on bad input) and the served `/openapi.json`.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Source keys and buckets become folders under bucket_root: keep them to one safe path segment.
SOURCE_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,254}$"
# A prefix is zero or more safe segments, each followed by "/" or the end ("raw/", "airbyte/acme-").
PREFIX_PATTERN = r"^(?:[A-Za-z0-9_=-][A-Za-z0-9._=-]*(?:/|$))*$"


def _no_dot_dot(value: str | None) -> str | None:
    if value is not None and ".." in value:
        raise ValueError("must not contain '..'")
    return value


# --- nested config ---------------------------------------------------------------------------------------


class TextField(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str = Field(min_length=1)
    boost: float = 1
    natural_language: bool = True


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    text_fields: list[TextField] = []


class EmbeddingField(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str = Field(min_length=1)
    max_chars: int = Field(default=4000, ge=1)


class VocabularyField(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str = Field(min_length=1)


class DocumentEmbeddings(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: list[EmbeddingField] = []


class Vocabulary(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: list[VocabularyField] = []


class ImageEmbeddings(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: list[str] = []


class SemanticConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    document_embeddings: DocumentEmbeddings = DocumentEmbeddings()
    vocabulary: Vocabulary = Vocabulary()
    image_embeddings: ImageEmbeddings | None = None


# --- shared items (§3) ------------------------------------------------------------------------------------


class SourceItem(BaseModel):
    source_id: int
    source_key: str
    source_type: str
    tenant_id: str
    name: str
    dataset_id: str
    bucket: str
    prefix: str
    format: str
    iam_role_arn: str | None
    intake_role_arn: str | None
    external_id_configured: bool
    connector_id: int | None
    enabled: bool
    retention_days: int | None
    parse_config: dict[str, Any]
    transform_config: dict[str, Any]
    search_config: dict[str, Any]
    semantic_config: dict[str, Any]
    ingest_token_configured: bool
    ingest_token_created_at: datetime | None
    ingest_token_last_used_at: datetime | None
    ingest_token_revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ConnectorItem(BaseModel):
    connector_id: int
    connector_key: str
    connector_type: str
    name: str
    config: dict[str, Any]
    enabled: bool
    tenant_id: str
    created_at: datetime
    updated_at: datetime


class AirbyteSourceState(BaseModel):
    source_id: int
    provider_key: str
    airbyte_source_definition_id: str
    airbyte_source_definition_name: str
    airbyte_source_id: str | None
    airbyte_destination_id: str | None
    airbyte_connection_id: str | None
    credential_status: Literal["not_provisioned", "pending_oauth", "ready", "failed"]
    destination_status: str
    connection_status: Literal["none", "active", "inactive"]
    oauth_mode: Literal["airbyte", "splendor", "none"]
    schedule_type: Literal["manual", "cron"]
    cron_expression: str | None
    stream_config: dict[str, Any]


RunStatus = Literal["pending", "running", "incomplete", "succeeded", "failed", "cancelled"]


class ConnectorRunItem(BaseModel):
    run_id: int
    source_id: int
    airbyte_job_id: str | None
    trigger: Literal["manual", "scheduled", "backfill"]
    status: RunStatus
    records_synced: int | None
    bytes_synced: int | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


IngestStatus = Literal[
    "uploading", "queued", "processing", "text_indexed", "semantic_pending", "ready", "failed", "aborted",
    "deleted", "superseded",
]  # fmt: skip


class Lifecycle(BaseModel):
    state: str
    reasons: list[str]
    repairable: bool


class ReadyFor(BaseModel):
    text_search: bool
    sql_search: bool
    semantic_search: bool


class DocumentCounts(BaseModel):
    expected: int
    parsed: int
    schema_observed: int
    index_committed: int
    semantic_embedded: int
    semantic_total: int


class IngestRunItem(BaseModel):
    ingest_run_id: str
    tenant_id: str
    dataset_id: str
    source_id: int
    connector_run_id: int | None
    upload_session_id: str | None
    input_kind: str
    bucket: str
    key: str
    etag: str | None
    status: IngestStatus
    lifecycle: Lifecycle
    ready_for: ReadyFor
    documents: DocumentCounts
    error_code: str | None
    error_message: str | None
    ingest_failure_id: str | None
    reindex_job_id: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    text_indexed_at: datetime | None
    semantic_ready_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    updated_at: datetime


# --- envelopes ---------------------------------------------------------------------------------------------


class AirbyteSourceEnvelope(BaseModel):
    airbyte: AirbyteSourceState
    connector: ConnectorItem
    source: SourceItem


class AirbyteSourceResult(BaseModel):
    airbyte: AirbyteSourceState
    source: SourceItem


class ProvisionResult(AirbyteSourceResult):
    consent_url: str | None = Field(default=None, description="Set for OAuth providers: send the user here.")


class RunEnvelope(BaseModel):
    run: ConnectorRunItem


class RunList(BaseModel):
    runs: list[ConnectorRunItem]


class SourceList(BaseModel):
    sources: list[SourceItem]


class IngestRunList(BaseModel):
    runs: list[IngestRunItem]


class EnqueueIngestResult(BaseModel):
    ingest_runs: list[IngestRunItem]


# --- providers and catalog ----------------------------------------------------------------------------------


class ProviderItem(BaseModel):
    provider_key: str
    name: str
    auth_mode: Literal["oauth", "api_key"]
    oauth_mode: Literal["airbyte", "splendor", "none"]
    airbyte_source_definition_id: str
    default_streams: list[str]


class ProviderList(BaseModel):
    providers: list[ProviderItem]


class ProviderDiscovery(BaseModel):
    provider_key: str
    tenant_id: str
    airbyte_workspace_id: str
    airbyte_source_definition_id: str | None
    airbyte_source_definition_name: str
    docker_repository: str | None
    docker_image_tag: str | None
    auth_mode: Literal["oauth", "api_key"]
    oauth_mode: Literal["airbyte", "splendor", "none"]
    supports_airbyte_oauth: bool
    connection_specification: dict[str, Any]
    oauth_input_configuration: dict[str, Any]
    consent_url: str | None = None
    status: Literal["ready", "api_key", "missing_source_definition", "airbyte_oauth_unavailable"]
    error_message: str | None


class SourceDefinitionItem(BaseModel):
    source_definition_id: str
    name: str
    docker_repository: str
    docker_image_tag: str


class CatalogList(BaseModel):
    source_definitions: list[SourceDefinitionItem]


class CatalogDiscovery(BaseModel):
    tenant_id: str
    airbyte_workspace_id: str
    source_definition_id: str
    source_definition_name: str
    docker_repository: str | None
    docker_image_tag: str | None
    connection_specification: dict[str, Any]
    oauth_input_configuration: dict[str, Any]
    oauth_mode: Literal["airbyte", "none"]
    supports_airbyte_oauth: bool
    consent_url: str | None = None


class StreamField(BaseModel):
    name: str
    type: str


class StreamSchema(BaseModel):
    name: str
    fields: list[StreamField]
    supported_sync_modes: list[Literal["full_refresh", "incremental"]]


class DiscoverSchemaResult(BaseModel):
    streams: list[StreamSchema]


# --- requests: connectors -----------------------------------------------------------------------------------


class CreateAirbyteSourceRequest(BaseModel):
    bucket: str = Field(min_length=1, max_length=255, pattern=BUCKET_PATTERN)
    connector_key: str = Field(min_length=1, max_length=128)
    connector_name: str = Field(min_length=1, max_length=255)
    dataset_id: str = Field(min_length=1, max_length=128)
    iam_role_arn: str = Field(min_length=1, max_length=2048)
    provider_key: str | None = Field(default=None, min_length=1, max_length=64)
    source_key: str = Field(min_length=1, max_length=128, pattern=SOURCE_KEY_PATTERN)
    source_name: str = Field(min_length=1, max_length=255)
    source_definition_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="Long-tail path: instead of provider_key."
    )
    source_type: Literal["airbyte"] | None = None
    cron_expression: str | None = Field(default=None, max_length=255)
    enabled: bool = True
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    parse_config: dict[str, Any] = {}
    prefix: str = Field(default="", max_length=1024, pattern=PREFIX_PATTERN)
    retention_days: int | None = Field(default=None, ge=1)
    schedule_type: Literal["manual", "cron"] = "manual"
    search_config: SearchConfig = SearchConfig()
    semantic_config: SemanticConfig = SemanticConfig()
    streams: list[str] | None = Field(default=None, max_length=500)
    transform_config: dict[str, Any] = {}

    @field_validator("bucket", "source_key", "prefix")
    @classmethod
    def _no_traversal(cls, value: str | None) -> str | None:
        return _no_dot_dot(value)

    @model_validator(mode="after")
    def _one_definition(self) -> "CreateAirbyteSourceRequest":
        if self.provider_key is None and self.source_definition_id is None:
            raise ValueError("provider_key or source_definition_id is required")
        if self.schedule_type == "cron" and not self.cron_expression:
            raise ValueError("cron_expression is required when schedule_type is 'cron'")
        return self


class ProvisionRequest(BaseModel):
    source_configuration: dict[str, Any] = {}


class OAuthCompleteRequest(BaseModel):
    secret_id: str = Field(min_length=1, max_length=255)


class CreateConnectionRequest(BaseModel):
    streams: list[str] | None = Field(default=None, max_length=500)


class SyncRequest(BaseModel):
    trigger: Literal["manual", "scheduled", "backfill"] = "manual"


class EnqueueIngestRequest(BaseModel):
    run_id: int | None = Field(default=None, ge=1)


# --- requests: sources --------------------------------------------------------------------------------------


class UpdateSourceRequest(BaseModel):
    """Partial update: only the fields sent are changed."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    enabled: bool | None = None
    retention_days: int | None = Field(default=None, ge=1)
    parse_config: dict[str, Any] | None = None
    transform_config: dict[str, Any] | None = None
    search_config: SearchConfig | None = None
    semantic_config: SemanticConfig | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> "UpdateSourceRequest":
        for name in (
            "name",
            "enabled",
            "parse_config",
            "transform_config",
            "search_config",
            "semantic_config",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class SemanticShorthand(BaseModel):
    model_config = ConfigDict(extra="allow")
    image_embeddings: ImageEmbeddings | None = None


class CreateHostedSourceRequest(BaseModel):
    source_key: str = Field(min_length=1, max_length=128, pattern=SOURCE_KEY_PATTERN)
    name: str = Field(min_length=1, max_length=255)
    dataset_id: str = Field(min_length=1, max_length=128)
    source_type: Literal["hosted"] = "hosted"
    bucket: str | None = Field(default=None, min_length=1, max_length=255, pattern=BUCKET_PATTERN)
    prefix: str = Field(default="", max_length=1024, pattern=PREFIX_PATTERN)
    retention_days: int | None = Field(default=None, ge=1)
    parse_config: dict[str, Any] = {}
    transform_config: dict[str, Any] = {}
    search_config: SearchConfig = SearchConfig()
    semantic_config: SemanticConfig = SemanticConfig()
    semantic: SemanticShorthand | None = Field(
        default=None,
        description="Concept-page shorthand, e.g. {'image_embeddings': {'fields': ['photo_url']}}.",
    )

    @field_validator("bucket", "source_key", "prefix")
    @classmethod
    def _no_traversal(cls, value: str | None) -> str | None:
        return _no_dot_dot(value)


class IngestTokenResult(BaseModel):
    source_id: int
    token: str
    created_at: datetime


class IngestTokenRevoked(BaseModel):
    source_id: int
    revoked_at: datetime


# --- requests: uploads and logs -----------------------------------------------------------------------------


class InitiateUploadRequest(BaseModel):
    content_type: str = Field(min_length=1, max_length=255)
    object_size_bytes: int = Field(ge=0)
    filename: str | None = Field(default=None, max_length=1024)


class UploadSession(BaseModel):
    upload_session_id: str
    upload_mode: Literal["single", "multipart"]
    bucket: str
    key: str
    expires_at: datetime
    upload_url: str | None
    upload_id: str | None
    part_size_bytes: int | None
    required_headers: dict[str, str]


class SignPartsRequest(BaseModel):
    upload_session_id: str = Field(min_length=1, max_length=64)
    part_numbers: list[int] = Field(min_length=1, max_length=1000)

    @field_validator("part_numbers")
    @classmethod
    def _in_range(cls, value: list[int]) -> list[int]:
        if any(n < 1 or n > 10000 for n in value):
            raise ValueError("part numbers are between 1 and 10000")
        return value


class SignedPart(BaseModel):
    part_number: int
    upload_url: str
    expires_at: datetime


class SignPartsResult(BaseModel):
    parts: list[SignedPart]


class CompletedPart(BaseModel):
    etag: str = Field(min_length=1, max_length=255)
    part_number: int = Field(ge=1, le=10000)


class CompleteUploadRequest(BaseModel):
    upload_session_id: str = Field(min_length=1, max_length=64)
    parts: list[CompletedPart] | None = Field(default=None, max_length=10000)


class UploadCompleted(BaseModel):
    bucket: str
    dataset_id: str
    etag: str | None
    format: str
    key: str
    source: str
    source_id: int | None
    tenant_id: str


class HostedUploadReadiness(IngestRunItem):
    upload_status: Literal["pending", "completed", "expired"]
    ingest_status: IngestStatus


class LogBatch(BaseModel):
    records: list[dict[str, Any]] = Field(max_length=10000)


class LogsAccepted(BaseModel):
    received: int
    fragment_id: str


# --- identity -----------------------------------------------------------------------------------------------


class MeTenant(BaseModel):
    tenant_id: str
    name: str
    role: Literal["Admin", "Member"]
    is_admin: bool
    plan: Literal["growth", "standard"]
    rbac_enabled: bool
    propelauth_org_id: str | None


class MeResponse(BaseModel):
    user_id: str
    email: str | None
    is_staff: bool = False
    tenants: list[MeTenant]


class CreateApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=255)


class ApiKeyItem(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    token: str | None
