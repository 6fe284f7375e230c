"""What the soak runner hands a worker and what the worker writes back (JSON lines, one per event)."""

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

Phase = Literal["connect", "sync"]
SECRET_BLOCK = "soak-stripe-credentials"
# The pipeline says "fix the input first" with these: resuming cannot help, so the soak does not.
FINAL_ERRORS = frozenset({"PermanentStepError", "SpecError"})


class Job(BaseModel):
    """One phase of one pipeline. A resume is the same job (same sync_id) given to a new process."""

    pipeline: int
    source_key: str
    phase: Phase
    sync_id: str
    resume: int = 0


class Report(BaseModel):
    """A line of a worker's report file."""

    event: Literal["start", "done", "failed"]
    pipeline: int
    phase: Phase
    sync_id: str
    resume: int
    source_key: str
    run_id: int | None = None
    run_status: str | None = None
    attempt_run_ids: list[int] = []
    ingest_run_ids: list[str] = []
    ingest_status: str | None = None
    error_type: str | None = None
    error: str | None = None
    seconds: float | None = None


def spec_for(source_key: str) -> dict[str, Any]:
    """A plain dict, as a deployment's parameters would arrive (validated by the flow itself)."""
    return {
        "provider_key": "stripe",
        "source_key": source_key,
        "dataset_id": "soak",
        "bucket": "soak-bucket",
        "iam_role_arn": "arn:aws:iam::123456789012:role/soak",
        "streams": ["charges", "customers"],
        "credentials_secret": SECRET_BLOCK,
    }


def read_reports(path: Path) -> list[Report]:
    """Every complete line of a report file (a SIGKILLed writer may leave a torn last line)."""
    if not path.exists():
        return []
    reports = []
    for line in path.read_text().splitlines():
        try:
            reports.append(Report.model_validate(json.loads(line)))
        except ValueError:
            continue
    return reports
