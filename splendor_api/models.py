"""Request and response models of the Splendor admin API.

Response models tolerate fields they do not know (the API may grow) but insist on the fields the pipeline
acts on; a missing one surfaces as ``ResponseInvalid`` naming it. Enumerated values the docs leave open
(run status, credential status, ...) stay plain strings on the models: callers compare them against the
StrEnums below and fail closed on anything else.

Request models reject unknown fields and enforce the documented limits, so a bad spec fails locally with a
message naming the field instead of a 422 from the server. Their ``to_body()`` gives the JSON to send.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

# --- status vocabularies -------------------------------------------------------------------------------


class RunStatus(StrEnum):
    """Connector run statuses of the contract. `incomplete`: Airbyte is retrying; the run goes on."""

    PENDING = "pending"
    RUNNING = "running"
    INCOMPLETE = "incomplete"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class IngestStatus(StrEnum):
    UPLOADING = "uploading"
    QUEUED = "queued"
    PROCESSING = "processing"
    TEXT_INDEXED = "text_indexed"
    SEMANTIC_PENDING = "semantic_pending"
    READY = "ready"
    FAILED = "failed"
    ABORTED = "aborted"
    DELETED = "deleted"
    SUPERSEDED = "superseded"


class CredentialStatus(StrEnum):
    NOT_PROVISIONED = "not_provisioned"
    PENDING_OAUTH = "pending_oauth"
    READY = "ready"
    FAILED = "failed"


class ConnectionStatus(StrEnum):
    NONE = "none"
    ACTIVE = "active"
    INACTIVE = "inactive"


class AuthMode(StrEnum):
    OAUTH = "oauth"
    API_KEY = "api_key"


# Members are str, so a status read from the API (kept as a plain string, since the live API may send
# values the contract does not list) compares and hashes equal to its member.
RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
RUN_ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.INCOMPLETE})
RUN_STATUSES = frozenset(RunStatus)

INGEST_TERMINAL_OK = frozenset({IngestStatus.READY})
INGEST_TERMINAL_BAD = frozenset(
    {IngestStatus.FAILED, IngestStatus.ABORTED, IngestStatus.DELETED, IngestStatus.SUPERSEDED}
)
INGEST_ACTIVE = frozenset(IngestStatus) - INGEST_TERMINAL_OK - INGEST_TERMINAL_BAD

SyncTrigger = Literal["manual", "scheduled", "backfill"]
ScheduleType = Literal["manual", "cron"]


# --- bases ---------------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of response models: unknown fields are kept (``model_extra``), not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RequestModel(BaseModel):
    """Base of request bodies: strict about names and limits; errors never echo the values given."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, validate_assignment=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: only the fields the caller set (so server defaults apply to the rest)."""
        return self.model_dump(mode="json", exclude_unset=True)


# --- nested source configuration (shapes from the create-source sample) -------------------------------


class TextField(ApiModel):
    field: str
    boost: float | None = None
    natural_language: bool | None = None


class SearchConfig(ApiModel):
    text_fields: list[TextField] = Field(default_factory=list)


class EmbeddingField(ApiModel):
    field: str
    max_chars: int | None = None


class VocabularyField(ApiModel):
    field: str


class DocumentEmbeddings(ApiModel):
    fields: list[EmbeddingField] = Field(default_factory=list)


class Vocabulary(ApiModel):
    fields: list[VocabularyField] = Field(default_factory=list)


class SemanticConfig(ApiModel):
    document_embeddings: DocumentEmbeddings = Field(default_factory=DocumentEmbeddings)
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    # Shown in the docs as `{"fields": ["photo_url"]}` under a `semantic` key; its SourceItem form is a guess.
    image_embeddings: dict[str, Any] | None = None


# --- sources and connectors ----------------------------------------------------------------------------


class Source(ApiModel):
    """SourceItem."""

    source_id: int
    source_key: str
    source_type: str
    tenant_id: str
    name: str
    dataset_id: str
    enabled: bool = True
    bucket: str | None = None
    prefix: str = ""
    format: str | None = None
    iam_role_arn: str | None = None
    intake_role_arn: str | None = None
    external_id_configured: bool = False
    connector_id: int | None = None
    retention_days: int | None = None
    parse_config: dict[str, Any] = Field(default_factory=dict)
    transform_config: dict[str, Any] = Field(default_factory=dict)
    search_config: SearchConfig = Field(default_factory=SearchConfig)
    semantic_config: SemanticConfig = Field(default_factory=SemanticConfig)
    ingest_token_configured: bool = False
    ingest_token_created_at: datetime | None = None
    ingest_token_last_used_at: datetime | None = None
    ingest_token_revoked_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Connector(ApiModel):
    """ConnectorItem."""

    connector_id: int
    connector_key: str
    connector_type: str
    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    tenant_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class AirbyteState(ApiModel):
    """AirbyteSourceState: the `airbyte` object of the Airbyte-source responses."""

    source_id: int
    # Null for a long-tail source registered by source_definition_id rather than a curated provider.
    provider_key: str | None = None
    airbyte_source_definition_id: str | None = None
    airbyte_source_definition_name: str | None = None
    airbyte_source_id: str | None = None
    airbyte_destination_id: str | None = None
    airbyte_connection_id: str | None = None
    credential_status: str
    destination_status: str | None = None
    connection_status: str
    oauth_mode: str | None = None
    schedule_type: str | None = None
    cron_expression: str | None = None
    stream_config: dict[str, Any] = Field(default_factory=dict)

    @property
    def streams(self) -> list[str]:
        streams = self.stream_config.get("streams")
        return [str(s) for s in streams] if isinstance(streams, list) else []

    @property
    def credentials_ready(self) -> bool:
        return self.credential_status == CredentialStatus.READY

    @property
    def has_connection(self) -> bool:
        return self.airbyte_connection_id is not None


class AirbyteSourceEnvelope(ApiModel):
    """`{"airbyte", "connector", "source"}`; `connector` is absent from some responses."""

    airbyte: AirbyteState
    connector: Connector | None = None
    source: Source


class ProvisionResult(ApiModel):
    """Provision response; `consent_url` is set for OAuth providers."""

    airbyte: AirbyteState
    source: Source
    consent_url: str | None = None

    @model_validator(mode="after")
    def _consent_url_from_airbyte(self) -> Self:
        # The contract puts consent_url at top level; the live API might nest it in `airbyte` instead.
        if self.consent_url is None and self.airbyte.model_extra:
            nested = self.airbyte.model_extra.get("consent_url")
            if isinstance(nested, str):
                self.consent_url = nested
        return self


# --- runs ----------------------------------------------------------------------------------------------


class ConnectorRun(ApiModel):
    """ConnectorRunItem: one Airbyte sync run."""

    run_id: int
    source_id: int
    status: str
    airbyte_job_id: str | None = None
    trigger: str | None = None
    records_synced: int | None = None
    bytes_synced: int | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    @property
    def is_active(self) -> bool:
        return self.status in RUN_ACTIVE

    @property
    def status_known(self) -> bool:
        return self.status in RUN_STATUSES


class IngestLifecycle(ApiModel):
    state: str | None = None
    reasons: list[Any] = Field(default_factory=list)
    repairable: bool | None = None


class ReadyFor(ApiModel):
    text_search: bool = False
    sql_search: bool = False
    semantic_search: bool = False


class DocumentCounts(ApiModel):
    expected: int | None = None
    parsed: int | None = None
    schema_observed: int | None = None
    index_committed: int | None = None
    semantic_embedded: int | None = None
    semantic_total: int | None = None


class IngestRun(ApiModel):
    """IngestRunItem."""

    ingest_run_id: str
    tenant_id: str
    dataset_id: str
    source_id: int
    status: str
    connector_run_id: int | None = None
    upload_session_id: str | None = None
    input_kind: str | None = None
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    lifecycle: IngestLifecycle | None = None
    ready_for: ReadyFor | None = None
    documents: DocumentCounts | None = None
    error_code: str | None = None
    error_message: str | None = None
    ingest_failure_id: str | int | None = None
    reindex_job_id: str | int | None = None
    created_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    text_indexed_at: datetime | None = None
    semantic_ready_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_ready(self) -> bool:
        return self.status in INGEST_TERMINAL_OK

    @property
    def is_failed(self) -> bool:
        return self.status in INGEST_TERMINAL_BAD

    @property
    def is_terminal(self) -> bool:
        return self.is_ready or self.is_failed


# --- identity ------------------------------------------------------------------------------------------


class TenantAccess(ApiModel):
    """One tenant the caller can act in, as reported by /v1/me."""

    tenant_id: str
    # Branch on is_admin, not on role: with RBAC off (standard plan) every member acts as admin.
    is_admin: bool
    name: str | None = None
    role: str | None = None
    plan: str | None = None
    rbac_enabled: bool | None = None
    propelauth_org_id: str | None = None


class Me(ApiModel):
    user_id: str
    email: str | None = None
    is_staff: bool = False
    tenants: list[TenantAccess] = Field(default_factory=list)

    def tenant(self, tenant_id: str) -> TenantAccess | None:
        return next((t for t in self.tenants if t.tenant_id == tenant_id), None)


# --- discovery -----------------------------------------------------------------------------------------


class Provider(ApiModel):
    """A curated connector provider."""

    provider_key: str
    name: str
    auth_mode: str
    oauth_mode: str
    airbyte_source_definition_id: str | None = None
    default_streams: list[str] = Field(default_factory=list)


class ProviderDiscovery(ApiModel):
    """Connector spec and auth metadata of a curated provider (the "Discover an Airbyte schema" endpoint)."""

    provider_key: str
    tenant_id: str
    airbyte_workspace_id: str
    airbyte_source_definition_id: str | None
    airbyte_source_definition_name: str | None
    docker_repository: str | None = None
    docker_image_tag: str | None = None
    auth_mode: str
    oauth_mode: str
    supports_airbyte_oauth: bool
    connection_specification: dict[str, Any]
    oauth_input_configuration: dict[str, Any] = Field(default_factory=dict)
    consent_url: str | None = None
    status: str
    error_message: str | None = None


class SourceDefinition(ApiModel):
    """An entry of the Airbyte catalog (the long tail of connectors)."""

    source_definition_id: str
    # The contract says `name`; an earlier reading of the docs suggested `source_definition_name`.
    name: str = Field(validation_alias=AliasChoices("name", "source_definition_name"))
    docker_repository: str | None = None
    docker_image_tag: str | None = None


class CatalogDiscovery(ApiModel):
    """Spec and OAuth capabilities of an Airbyte catalog definition."""

    tenant_id: str
    airbyte_workspace_id: str
    source_definition_id: str
    source_definition_name: str
    docker_repository: str | None = None
    docker_image_tag: str | None = None
    connection_specification: dict[str, Any]
    oauth_input_configuration: dict[str, Any] = Field(default_factory=dict)
    oauth_mode: str
    supports_airbyte_oauth: bool
    consent_url: str | None = None


class StreamField(ApiModel):
    name: str
    # A JSON-schema type: a name ("string") or a list of names (["null", "string"]).
    type: str | list[str] | None = None


class StreamSchema(ApiModel):
    name: str
    fields: list[StreamField] = Field(default_factory=list)
    supported_sync_modes: list[str] = Field(default_factory=list)


# --- uploads, logs, ingest tokens ----------------------------------------------------------------------


class UploadSession(ApiModel):
    """Initiated hosted upload: `single` mode has `upload_url`, `multipart` has `upload_id` and part size."""

    upload_session_id: str
    upload_mode: str
    bucket: str
    key: str
    expires_at: datetime
    upload_url: str | None
    upload_id: str | None
    part_size_bytes: int | None
    required_headers: dict[str, str]


class SignedPart(ApiModel):
    part_number: int
    upload_url: str
    expires_at: datetime | None = None
    required_headers: dict[str, str] = Field(default_factory=dict)


class CompletedPart(RequestModel):
    etag: str = Field(min_length=1)
    part_number: int = Field(ge=1, le=10000)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class CompletedUpload(ApiModel):
    bucket: str
    dataset_id: str
    etag: str | None = None
    format: str | None = None
    key: str
    source: str
    source_id: int | None = None
    tenant_id: str


class UploadReadiness(ApiModel):
    """Readiness of a hosted upload: upload and ingest status plus IngestRunItem-like fields."""

    upload_session_id: str
    upload_status: str
    ingest_status: str | None = None
    ingest_run_id: str | None = None
    dataset_id: str | None = None
    source_id: int | None = None
    ready_for: ReadyFor | None = None
    documents: DocumentCounts | None = None
    error_code: str | None = None
    error_message: str | None = None


class LogsAccepted(ApiModel):
    """202 answer to a log batch. Only `fragment_id` is documented; the count's name is a guess."""

    fragment_id: str
    received: int | None = Field(
        default=None,
        validation_alias=AliasChoices("received", "accepted", "records_received", "record_count"),
    )


class IngestToken(ApiModel):
    """A freshly rotated source ingest token; shown only once."""

    source_id: int
    token: SecretStr
    created_at: datetime | None = None


# --- request bodies ------------------------------------------------------------------------------------


class CreateAirbyteSource(RequestModel):
    """Body of `POST /v1/admin/airbyte-sources`.

    Give `provider_key` for a curated provider, or `source_definition_id` for an Airbyte catalog connector.
    """

    bucket: str = Field(min_length=1, max_length=255)
    connector_key: str = Field(min_length=1, max_length=128)
    connector_name: str = Field(min_length=1, max_length=255)
    dataset_id: str = Field(min_length=1, max_length=128)
    iam_role_arn: str = Field(min_length=1, max_length=2048)
    provider_key: str | None = Field(default=None, min_length=1, max_length=64)
    source_definition_id: str | None = Field(default=None, min_length=1)
    source_key: str = Field(min_length=1, max_length=128)
    source_name: str = Field(min_length=1, max_length=255)
    cron_expression: str | None = Field(default=None, max_length=255)
    enabled: bool | None = None
    # Write-only: the API reports back only `external_id_configured`. Kept secret in reprs.
    external_id: SecretStr | None = Field(default=None, min_length=1, max_length=255)
    parse_config: dict[str, Any] | None = None
    prefix: str | None = Field(default=None, max_length=1024)
    retention_days: int | None = Field(default=None, ge=1)
    schedule_type: ScheduleType | None = None
    search_config: SearchConfig | None = None
    semantic_config: SemanticConfig | None = None
    streams: list[str] | None = None
    transform_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.provider_key is None and self.source_definition_id is None:
            raise ValueError("provider_key or source_definition_id is required")
        if self.schedule_type == "cron" and not self.cron_expression:
            raise ValueError("cron_expression is required when schedule_type is 'cron'")
        return self

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.external_id is not None:
            body["external_id"] = self.external_id.get_secret_value()
        return body


class SourceUpdate(RequestModel):
    """Partial update of a source (`PUT /v1/admin/sources/{source_id}`): only set fields are sent."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    enabled: bool | None = None
    retention_days: int | None = Field(default=None, ge=1)
    parse_config: dict[str, Any] | None = None
    transform_config: dict[str, Any] | None = None
    search_config: SearchConfig | None = None
    semantic_config: SemanticConfig | None = None


class CreateHostedSource(RequestModel):
    """Body of `POST /v1/admin/hosted-sources`."""

    source_key: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=255)
    dataset_id: str = Field(min_length=1, max_length=128)
    source_type: Literal["hosted"] = "hosted"
    # Image fields, e.g. {"image_embeddings": {"fields": ["photo_url"]}} (the docs' `semantic` key).
    semantic: dict[str, Any] | None = None

    def to_body(self) -> dict[str, Any]:
        # source_type is part of the documented body even though it has only one value.
        return self.model_dump(mode="json", exclude_none=True)


class ProvisionRequest(RequestModel):
    # Connector credentials for api_key providers: never logged, never shown in errors.
    source_configuration: dict[str, Any] = Field(default_factory=dict, repr=False)

    def to_body(self) -> dict[str, Any]:
        return {"source_configuration": self.source_configuration}


class CompleteOAuthRequest(RequestModel):
    secret_id: str = Field(min_length=1, repr=False)


class CreateConnectionRequest(RequestModel):
    streams: list[str] | None = Field(default=None, min_length=1)


class StartSyncRequest(RequestModel):
    trigger: SyncTrigger = "manual"

    def to_body(self) -> dict[str, Any]:
        return {"trigger": self.trigger}


class EnqueueIngestRequest(RequestModel):
    run_id: int | None = Field(default=None, ge=1)


class InitiateUploadRequest(RequestModel):
    content_type: str = Field(min_length=1, max_length=255)
    object_size_bytes: int = Field(ge=0)
    filename: str | None = Field(default=None, max_length=1024)


class SignPartsRequest(RequestModel):
    upload_session_id: str = Field(min_length=1, max_length=64)
    part_numbers: list[int] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _positive_parts(self) -> Self:
        if any(n < 1 or n > 10000 for n in self.part_numbers):
            raise ValueError("part_numbers must be between 1 and 10000")
        return self


class CompleteUploadRequest(RequestModel):
    upload_session_id: str = Field(min_length=1, max_length=64)
    parts: list[CompletedPart] | None = None


class StreamLogsRequest(RequestModel):
    records: list[dict[str, Any]] = Field(min_length=1, repr=False)
