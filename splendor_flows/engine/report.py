"""How the engine tells the world what happens, without knowing who listens.

The Prefect tasks turn these calls into run logs, Prefect events and progress artifacts; the fleet
records the step each source is in; tests keep them in a list. Messages and payloads carry ids,
statuses and counts only, never a token or a connector credential.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

Level = Literal["info", "warning", "error"]


class Event(StrEnum):
    """Every event the pipelines publish, for automations and the Prefect event feed (design §6).

    The one list of names: tasks, flows, the fleet, the uploads and the automations file use these.
    Resource id `splendor.source.<tenant>.<source_key>`; payloads carry ids, counts, statuses and
    error codes and messages with known secrets masked, never a token or a credential.
    """

    # Onboarding (connect-source).
    SOURCE_CREATED = "splendor.source.created"
    # The spec's source_key already named a source of the same connector: it was adopted, not created
    # (config drift, if any, was written to it). Published so a run that created nothing still says
    # which source it acts on.
    SOURCE_REUSED = "splendor.source.reused"
    # An OAuth source waits for an admin's consent (the consent link is published as an artifact).
    CREDENTIALS_WAITING = "splendor.credentials.waiting"
    CREDENTIALS_READY = "splendor.credentials.ready"
    CONNECTION_CREATED = "splendor.connection.created"
    CLASSIFICATION_APPLIED = "splendor.classification.applied"
    # Every sync and ingest (connect-source, sync-source, the fleet, after-upload).
    SYNC_STARTED = "splendor.sync.started"
    SYNC_SUCCEEDED = "splendor.sync.succeeded"
    SYNC_FAILED = "splendor.sync.failed"
    INGEST_ENQUEUED = "splendor.ingest.enqueued"
    INGEST_READY = "splendor.ingest.ready"
    INGEST_FAILED = "splendor.ingest.failed"
    UPLOAD_COMPLETED = "splendor.upload.completed"
    # No successful sync within the source's expected window; published by the Prefect server itself
    # (the freshness automation of deployments/automations.yaml), not by a flow.
    SOURCE_STALE = "splendor.source.stale"


class Reporter(Protocol):
    def step(self, name: str, run_id: int | None = None) -> None:
        """The pipeline enters `name` (about run `run_id` when known): a failure now belongs to it."""
        ...

    def log(self, level: Level, message: str) -> None: ...

    def event(self, name: Event, payload: dict[str, Any]) -> None: ...

    async def progress(self, percent: float) -> None:
        """How far the awaited run probably is (0-100), for a progress bar."""
        ...


@dataclass
class RecordingReporter:
    """Keeps every report in memory (engine tests; callers that only want the outcome)."""

    steps: list[tuple[str, int | None]] = field(default_factory=list)
    logs: list[tuple[Level, str]] = field(default_factory=list)
    events: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)
    progress_values: list[float] = field(default_factory=list)

    def step(self, name: str, run_id: int | None = None) -> None:
        self.steps.append((name, run_id))

    def log(self, level: Level, message: str) -> None:
        self.logs.append((level, message))

    def event(self, name: Event, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))

    async def progress(self, percent: float) -> None:
        self.progress_values.append(percent)

    def event_names(self) -> list[str]:
        return [str(name) for name, _ in self.events]
