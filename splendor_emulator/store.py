"""Emulator state: typed records kept in memory, written through to SQLite when a state file is given.

Everything time-dependent (run and ingest progress) is stored as the moments it was planned at, never as a
status, so a restart picks up where the clock says. One re-entrant lock guards all tables; handlers hold it
only for dictionary work (and, rarely, for landing a finished run's small files)."""

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field


class Record(BaseModel):
    KIND: ClassVar[str]
    KEY: ClassVar[str]

    @property
    def record_key(self) -> str:
        return str(getattr(self, self.KEY))


class AirbyteRec(BaseModel):
    provider_key: str
    source_definition_id: str
    source_definition_name: str
    oauth_mode: Literal["airbyte", "splendor", "none"]
    airbyte_source_id: str | None = None
    airbyte_destination_id: str | None = None
    airbyte_connection_id: str | None = None
    credential_status: Literal["not_provisioned", "pending_oauth", "ready", "failed"] = "not_provisioned"
    destination_status: Literal["pending", "ready"] = "pending"
    schedule_type: Literal["manual", "cron"] = "manual"
    cron_expression: str | None = None
    streams: list[str] = []


class SourceRec(Record):
    KIND: ClassVar[str] = "source"
    KEY: ClassVar[str] = "source_id"

    source_id: int
    tenant_id: str
    source_key: str
    source_type: Literal["airbyte", "hosted"]
    name: str
    dataset_id: str
    bucket: str
    prefix: str = ""
    format: str = "jsonl"
    iam_role_arn: str | None = None
    intake_role_arn: str | None = None
    external_id_configured: bool = False
    connector_id: int | None = None
    enabled: bool = True
    retention_days: int | None = None
    parse_config: dict[str, Any] = {}
    transform_config: dict[str, Any] = {}
    search_config: dict[str, Any] = {}
    semantic_config: dict[str, Any] = {}
    ingest_token_hash: str | None = None
    ingest_token_created_at: float | None = None
    ingest_token_last_used_at: float | None = None
    ingest_token_revoked_at: float | None = None
    created_at: float
    updated_at: float
    airbyte: AirbyteRec | None = None


class ConnectorRec(Record):
    KIND: ClassVar[str] = "connector"
    KEY: ClassVar[str] = "connector_id"

    connector_id: int
    tenant_id: str
    connector_key: str
    connector_type: str = "airbyte"
    name: str
    config: dict[str, Any] = {}
    enabled: bool = True
    created_at: float
    updated_at: float


class CredentialRec(Record):
    """Connector credentials. The values live in memory only (`exclude=True` keeps them out of the state file
    and out of any dump); the fingerprint lets a test see that a re-provision changed them."""

    KIND: ClassVar[str] = "credential"
    KEY: ClassVar[str] = "source_id"

    source_id: int
    tenant_id: str
    configuration: dict[str, Any] = Field(default={}, exclude=True, repr=False)
    fingerprint: str
    updated_at: float


class LandedFile(BaseModel):
    stream: str
    bucket: str
    key: str
    records: int
    bytes: int
    etag: str


class RunRec(Record):
    KIND: ClassVar[str] = "run"
    KEY: ClassVar[str] = "run_id"

    run_id: int
    source_id: int
    tenant_id: str
    trigger: Literal["manual", "scheduled", "backfill"]
    streams: list[str]
    created_at: float
    # The timeline, fixed when the run starts: pending, then attempts of `attempt_s` separated by `gap_s` of
    # `incomplete`, then the outcome.
    pending_s: float
    attempt_s: float
    gap_s: float
    incomplete_attempts: int = 0
    outcome: Literal["succeeded", "failed"] = "succeeded"
    zero_records: bool = False
    error_message: str | None = None
    records_per_stream: dict[str, int] = {}
    cancelled_at: float | None = None
    landed: bool = False
    files: list[LandedFile] = []
    ingest_run_ids: list[str] = []


class IngestRec(Record):
    KIND: ClassVar[str] = "ingest"
    KEY: ClassVar[str] = "ingest_run_id"

    ingest_run_id: str
    tenant_id: str
    dataset_id: str
    source_id: int
    connector_run_id: int | None = None
    upload_session_id: str | None = None
    input_kind: str
    bucket: str
    key: str
    etag: str | None = None
    documents: int = 0
    created_at: float
    # None while the bytes are still being uploaded (status `uploading`).
    queued_at: float | None = None
    step_s: float = 1.0
    # Set when an injected fault makes this run fail (a key of `ingest.INGEST_ERRORS`).
    error_code: str | None = None
    aborted_at: float | None = None
    # Set when enqueue-ingest queued the object again after this run failed (a repair).
    superseded_at: float | None = None


class PartRec(BaseModel):
    etag: str
    size: int


class UploadRec(Record):
    KIND: ClassVar[str] = "upload"
    KEY: ClassVar[str] = "upload_session_id"

    upload_session_id: str
    tenant_id: str
    source_id: int
    source_key: str
    dataset_id: str
    mode: Literal["single", "multipart"]
    bucket: str
    key: str
    content_type: str
    object_size_bytes: int
    filename: str | None = None
    format: str = "jsonl"
    upload_id: str | None = None
    part_size_bytes: int | None = None
    created_at: float
    expires_at: float
    parts: dict[int, PartRec] = {}
    completed_at: float | None = None
    etag: str | None = None
    ingest_run_id: str


class OAuthStateRec(Record):
    KIND: ClassVar[str] = "oauth_state"
    KEY: ClassVar[str] = "state"

    state: str
    tenant_id: str
    source_id: int
    mode: Literal["airbyte", "splendor"]
    created_at: float
    approved_at: float | None = None
    denied_at: float | None = None
    secret_id: str | None = None


class OAuthSecretRec(Record):
    KIND: ClassVar[str] = "oauth_secret"
    KEY: ClassVar[str] = "secret_id"

    secret_id: str
    tenant_id: str
    source_id: int
    created_at: float
    used_at: float | None = None


class ApiKeyRec(Record):
    KIND: ClassVar[str] = "api_key"
    KEY: ClassVar[str] = "key_id"

    key_id: int
    tenant_id: str
    name: str
    token_hash: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


R = TypeVar("R", bound=Record)

_RECORD_TYPES: tuple[type[Record], ...] = (
    SourceRec,
    ConnectorRec,
    CredentialRec,
    RunRec,
    IngestRec,
    UploadRec,
    OAuthStateRec,
    OAuthSecretRec,
    ApiKeyRec,
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.path = path
        self._tables: dict[str, dict[str, Record]] = {t.KIND: {} for t in _RECORD_TYPES}
        self._counters: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records"
                " (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
            )
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        by_kind = {t.KIND: t for t in _RECORD_TYPES}
        for kind, key, body in self._db.execute("SELECT kind, key, body FROM records"):
            model = by_kind.get(kind)
            if model is not None:
                self._tables[kind][key] = model.model_validate_json(body)
        for name, value in self._db.execute("SELECT name, value FROM counters"):
            self._counters[name] = int(value)

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def next_id(self, name: str) -> int:
        with self.lock:
            value = self._counters.get(name, 0) + 1
            self._counters[name] = value
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, value))
            return value

    def put(self, rec: Record) -> None:
        with self.lock:
            self._tables[rec.KIND][rec.record_key] = rec
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO records (kind, key, body) VALUES (?, ?, ?)",
                    (rec.KIND, rec.record_key, rec.model_dump_json()),
                )

    def get(self, model: type[R], key: object) -> R | None:
        with self.lock:
            found = self._tables[model.KIND].get(str(key))
            return found if isinstance(found, model) else None

    def all(self, model: type[R]) -> Iterator[R]:
        with self.lock:
            items = list(self._tables[model.KIND].values())
        for item in items:
            if isinstance(item, model):
                yield item
