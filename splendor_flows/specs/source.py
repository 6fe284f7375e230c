"""Typed description of one connector source, as a user writes it.

These models are flow parameters: Prefect renders them as the typed form of "Custom run" in the UI
and enforces them on the server, so every constraint here is checked before any Splendor call.
Limits follow the documented request constraints of "Create an Airbyte source"; a few are stricter
where the value later becomes a path, an S3 name or a Prefect resource id.
"""

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from splendor_flows.engine.classification import ClassificationMode
from splendor_flows.engine.errors import SpecError

# Source keys end up in object-store paths, Prefect resource ids and cache keys: keep them plain.
SOURCE_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# S3's own bucket naming rules (3-63 lowercase letters, digits, dots and dashes).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
IAM_ROLE_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
BLOCK_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,127}$"


class TextField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=255, description="Record field indexed for text search.")
    boost: float = Field(default=1.0, gt=0, le=100, description="Relative weight of this field.")
    natural_language: bool = Field(default=True, description="Analyse as natural-language text.")


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text_fields: list[TextField] = Field(default_factory=list)


class EmbeddingField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=255)
    max_chars: int = Field(default=4000, ge=1, le=100_000)


class VocabularyField(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1, max_length=255)


class DocumentEmbeddings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[EmbeddingField] = Field(default_factory=list)


class Vocabulary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[VocabularyField] = Field(default_factory=list)


class SemanticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_embeddings: DocumentEmbeddings = Field(default_factory=DocumentEmbeddings)
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)


class Schedule(BaseModel):
    """When the source syncs, and which scheduler starts the syncs: never both.

    `runner: prefect` (the default) makes it a schedule of the `sync-source` deployment, with the time zone,
    managed by `splendor-flows apply`; Splendor then keeps the source manual. `runner: splendor` hands the
    cron to Splendor's own scheduler instead (its API takes no time zone, so only UTC is accepted) and no
    Prefect schedule is made.
    """

    model_config = ConfigDict(extra="forbid")
    cron: str = Field(
        min_length=9, max_length=255, description="Five-field cron expression, e.g. '0 3 * * *'."
    )
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA time zone the cron is read in, e.g. 'Europe/Paris'."
    )
    runner: Literal["prefect", "splendor"] = Field(
        default="prefect",
        description="prefect: a schedule of the sync-source deployment; splendor: Splendor's own scheduler.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from prefect.client.schemas.schedules import CronSchedule

        if len(value.split()) != 5:
            raise ValueError("must have exactly five fields (minute hour day-of-month month day-of-week)")
        try:
            CronSchedule(cron=value)
        except ValueError as exc:
            raise ValueError(f"is not a valid cron expression: {value!r}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        # Prefect's own list, so a name accepted here is one the deployment schedule accepts too.
        from prefect.client.schemas.schedules import is_valid_timezone

        if not is_valid_timezone(value):
            raise ValueError(
                f"{value!r} is not an IANA time zone name; use one like 'UTC', 'Europe/Paris' or "
                "'America/New_York'"
            )
        return value

    @model_validator(mode="after")
    def _splendor_runs_utc(self) -> "Schedule":
        if self.runner == "splendor" and self.timezone != "UTC":
            raise ValueError(
                f"timezone {self.timezone!r} needs runner 'prefect': Splendor's scheduler takes a cron "
                "expression only (no time zone), so with runner 'splendor' the timezone must be 'UTC'"
            )
        return self


class OAuthOptions(BaseModel):
    """How an OAuth provider's consent is collected."""

    model_config = ConfigDict(extra="forbid")
    redirect_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="Where the provider's consent page sends the admin back (shows the secret_id).",
    )
    timeout_seconds: int = Field(
        default=3600, ge=10, le=7 * 24 * 3600, description="How long the flow waits for an admin to approve."
    )


class SourceSpec(BaseModel):
    """One Airbyte-backed Splendor source, declared as code."""

    model_config = ConfigDict(extra="forbid")

    provider_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Curated provider to connect, e.g. 'stripe' (or give source_definition_id).",
    )
    source_definition_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Airbyte catalog connector to connect (`splendor-flows catalog search`), instead of "
        "provider_key.",
    )
    source_key: Annotated[str, Field(pattern=SOURCE_KEY_PATTERN)] = Field(
        description="Unique key of the source in the tenant (letters, digits, '_', '.', '-'; max 128)."
    )
    dataset_id: str = Field(min_length=1, max_length=128, description="Dataset the records land in.")
    bucket: Annotated[str, Field(pattern=BUCKET_PATTERN)] = Field(
        description="Destination S3 bucket (S3 naming rules)."
    )
    iam_role_arn: Annotated[str, Field(pattern=IAM_ROLE_PATTERN, max_length=2048)] = Field(
        description="IAM role Splendor assumes to write the bucket, arn:aws:iam::<12 digits>:role/<name>."
    )
    source_name: str | None = Field(default=None, min_length=1, max_length=255)
    connector_key: str | None = Field(default=None, min_length=1, max_length=128)
    connector_name: str | None = Field(default=None, min_length=1, max_length=255)
    prefix: str = Field(default="", max_length=1024)
    streams: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        default=None,
        description="Streams to sync, as the connector's discovery names them; empty means its defaults.",
    )
    schedule: Schedule | None = Field(
        default=None,
        description="When to sync: a schedule of the sync-source deployment made by `splendor-flows apply` "
        "(runner prefect), or Splendor's own scheduler (runner splendor). Never both.",
    )
    retention_days: int | None = Field(default=None, ge=1, le=36500)
    search_config: SearchConfig = Field(default_factory=SearchConfig)
    semantic_config: SemanticConfig = Field(default_factory=SemanticConfig)
    credentials_secret: Annotated[str, Field(pattern=BLOCK_NAME_PATTERN)] | None = Field(
        default=None,
        description="Name of the Prefect Secret block holding the connector credentials (JSON object).",
    )
    oauth: OAuthOptions = Field(default_factory=OAuthOptions)
    classification: ClassificationMode = Field(
        default="off",
        description="Which fields are text, vocabulary or filters: 'off' applies search_config and "
        "semantic_config as written; 'review' proposes a classification from the discovered fields and "
        "waits for an admin to approve, edit or reject it; 'auto' applies the proposal. An explicit "
        "search_config or semantic_config always wins and skips the proposal.",
    )
    classification_timeout_seconds: int = Field(
        # The same default as the OAuth wait: the automation that fails an unanswered suspended run
        # (deployments/automations.yaml) uses one window for both.
        default=3600,
        ge=10,
        le=7 * 24 * 3600,
        description="With classification 'review': how long the run waits for an admin's answer.",
    )

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        duplicates = sorted({s for s in value if value.count(s) > 1})
        if duplicates:
            raise ValueError(f"lists a stream more than once: {', '.join(duplicates)}")
        return value or None

    @field_validator("prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix without '..' segments")
        return value

    @model_validator(mode="after")
    def _one_connector(self) -> "SourceSpec":
        if (self.provider_key is None) == (self.source_definition_id is None):
            raise ValueError(
                "give exactly one of provider_key (a curated provider) or source_definition_id "
                "(an Airbyte catalog connector)"
            )
        return self

    @model_validator(mode="after")
    def _names_default_to_keys(self) -> "SourceSpec":
        key = self.connector_id
        self.connector_key = self.connector_key or key[:128]
        self.connector_name = self.connector_name or key.replace("-", " ").title()[:255]
        self.source_name = self.source_name or self.source_key
        return self

    @property
    def connector_id(self) -> str:
        """The connector this spec names: its provider_key, else its source_definition_id."""
        return self.provider_key or self.source_definition_id or ""

    @property
    def connector_label(self) -> str:
        """How messages name the connector: "provider 'stripe'" or "catalog connector '<id>'"."""
        if self.provider_key is not None:
            return f"provider '{self.provider_key}'"
        return f"catalog connector '{self.source_definition_id}'"

    def is_connector_of(self, provider_key: str | None, source_definition_id: str | None) -> bool:
        """Whether a source registered with this provider_key / definition is this spec's connector.

        A catalog spec matches on the definition: Splendor may or may not report a provider_key for it.
        """
        if self.source_definition_id is not None:
            return source_definition_id == self.source_definition_id
        return provider_key == self.provider_key

    @property
    def has_index_config(self) -> bool:
        """Whether the spec names any field in search_config / semantic_config (explicit config)."""
        semantic = self.semantic_config
        return bool(
            self.search_config.text_fields
            or semantic.document_embeddings.fields
            or semantic.vocabulary.fields
        )

    @property
    def classifies(self) -> bool:
        """Whether the source's search / semantic config comes from a classification rather than from
        this spec: then the spec's empty config means "not managed here", never "clear it"."""
        return self.classification != "off" and not self.has_index_config

    @property
    def splendor_cron(self) -> str | None:
        """The cron Splendor's scheduler gets: only when the spec asks for that scheduler."""
        if self.schedule is not None and self.schedule.runner == "splendor":
            return self.schedule.cron
        return None

    @property
    def schedule_type(self) -> Literal["manual", "cron"]:
        """Splendor's schedule_type: `manual` unless Splendor's own scheduler runs the syncs."""
        return "cron" if self.splendor_cron else "manual"

    @property
    def prefect_schedule(self) -> Schedule | None:
        """The schedule the sync-source deployment carries for this source, if any."""
        return self.schedule if self.schedule is not None and self.schedule.runner == "prefect" else None


def describe_validation_error(exc: Exception) -> str:
    """One line per bad field, naming it the way a user wrote it (dotted path)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(root)"
        lines.append(f"{loc}: {err['msg']}")
    return "; ".join(lines)


def safe_slug(value: str) -> str:
    """A filesystem- and key-safe rendering of a user value (used in cache keys)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64]


# The spec model's own field (its pattern and its description), so the rule cannot drift from it.
_SOURCE_KEY_FIELD = SourceSpec.model_fields["source_key"]
_SOURCE_KEY: TypeAdapter[str] = TypeAdapter(Annotated[str, _SOURCE_KEY_FIELD])


def validate_source_key(value: str, *, field: str = "source_key") -> str:
    """`value` when it is a valid source key, else a SpecError naming `field` and what a key may hold.

    Source keys go into URL paths, where an HTTP client resolves `.` and `..` segments: validate before
    any call that builds a path from one.
    """
    try:
        return _SOURCE_KEY.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"]
        # Printable and bounded: the value may be hostile (control characters, megabytes).
        shown = ascii(value[:80])
        raise SpecError(
            shown[1:-1],
            f"{field} {shown} is not allowed ({reason}); expected: {_SOURCE_KEY_FIELD.description}",
        ) from None
