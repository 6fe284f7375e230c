"""Ingest runs: queued → processing → text_indexed → semantic_pending → ready, one step per `step_s` seconds
from the moment the run was queued (uploads sit in `uploading` until their upload completes)."""

from dataclasses import dataclass

from splendor_emulator.store import IngestRec

STEPS = ("queued", "processing", "text_indexed", "semantic_pending", "ready")
TERMINAL_INGEST_STATUSES = frozenset(("ready", "failed", "aborted", "deleted", "superseded"))
# The failures the emulator can inject: code → (message, whether enqueue-ingest may queue the object again).
# `parse_failed` stands for a transient failure, `unsupported_format` for one no retry can fix.
INGEST_ERRORS: dict[str, tuple[str, bool]] = {
    "parse_failed": ("Ingestion failed while parsing the object (injected fault)", True),
    "unsupported_format": ("The object's format cannot be ingested (injected fault)", False),
}
# An injected ingest failure happens when parsing finishes, i.e. where text indexing would start.
_FAIL_STEP = 2


@dataclass(frozen=True)
class IngestView:
    status: str
    step: int
    queued_at: float | None
    started_at: float | None
    text_indexed_at: float | None
    semantic_ready_at: float | None
    completed_at: float | None
    failed_at: float | None
    updated_at: float


def view_ingest(rec: IngestRec, now: float) -> IngestView:
    if rec.superseded_at is not None:
        # A failed run replaced by a repair keeps its failure moments; only the status moves on.
        failed_at = rec.superseded_at if rec.queued_at is None else rec.queued_at + _FAIL_STEP * rec.step_s
        return IngestView(
            "superseded", _FAIL_STEP, rec.queued_at, None, None, None, None, failed_at, rec.superseded_at
        )
    if rec.aborted_at is not None:
        return IngestView(
            "aborted", -1, rec.queued_at, None, None, None, rec.aborted_at, None, rec.aborted_at
        )
    if rec.queued_at is None:
        return IngestView("uploading", -1, None, None, None, None, None, None, rec.created_at)
    q, s = rec.queued_at, rec.step_s
    step = len(STEPS) - 1 if s <= 0 else min(int(max(now - q, 0) / s), len(STEPS) - 1)

    def at(n: int) -> float | None:
        return q + n * s if step >= n else None

    if rec.error_code is not None and step >= _FAIL_STEP:
        failed_at = q + _FAIL_STEP * s
        return IngestView("failed", _FAIL_STEP, q, at(1), None, None, None, failed_at, failed_at)
    updated = q + step * s
    return IngestView(STEPS[step], step, q, at(1), at(2), at(4), at(4), None, updated)
