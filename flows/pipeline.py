"""The part every pipeline shares: resolve the scope, then sync → wait → ingest with checkpoints.

Sync state machine (design §3): each attempt's start is checkpointed with its run id. On resume a
run in flight is attached to (its poll step has no checkpoint yet), a succeeded one goes straight
to ingestion, a failed or cancelled one makes the next attempt start a new run. Attempts that came
back from checkpoints do not count against this run's `max_sync_attempts`.
"""

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from splendor_api import SplendorError
from splendor_api.models import RunStatus
from splendor_flows.engine.errors import StepError, label_failure
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.results import FinishedRun, IngestResult
from splendor_flows.orchestration.api import load_config, open_client
from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.events import artifact_slug
from splendor_flows.tasks.ingest import enqueue_ingest, wait_for_ingest
from splendor_flows.tasks.sync import start_sync, wait_for_run

# Hard ceiling across all resumes, so a source that always fails cannot loop forever.
MAX_TOTAL_ATTEMPTS = 20


class SyncOutcome(BaseModel):
    run: FinishedRun
    attempts: list[FinishedRun]
    ingest: IngestResult | None
    zero_records: bool


class PipelineSummary(BaseModel):
    tenant: str
    source_key: str
    source_id: int
    sync_id: str
    run_id: int | None = None
    status: str
    records_synced: int | None = None
    bytes_synced: int | None = None
    sync_attempts: int = 0
    ingest_run_ids: list[str] = []
    ingest_status: str | None = None
    documents: int = 0
    warnings: list[str] = []
    steps: list[dict[str, Any]] = []


async def resolve_scope(source_key: str, sync_id: str | None, credentials_block: str | None) -> Scope:
    """Fix the checkpoint scope and check the token before anything else happens."""
    try:
        config = await load_config(credentials_block)
    except SplendorError as exc:
        label_failure(exc, "preflight", source_key)
        raise
    scope = Scope(
        tenant=config.tenant,
        source_key=source_key,
        sync_id=sync_id or str(flow_run.get_id() or "local"),
        credentials_block=credentials_block,
    )
    async with open_client(credentials_block, step="preflight", source_key=source_key) as client:
        await client.preflight()
    get_run_logger().info(
        "Pipeline for %s/%s with sync_id=%s (pass it to resume in a new run)",
        scope.tenant,
        scope.source_key,
        scope.sync_id,
    )
    return scope


async def sync_and_ingest(
    scope: Scope,
    source_id: int,
    *,
    trigger: str,
    max_sync_attempts: int,
    poll: PollOptions,
    force: bool,
    wait_ready: bool,
    expected_seconds: float | None = None,
) -> SyncOutcome:
    logger = get_run_logger()
    fresh: dict[str, Any] = {"refresh_cache": True} if force else {}
    attempts: list[FinishedRun] = []
    new_attempts = 0
    finished: FinishedRun | None = None
    for attempt in range(1, MAX_TOTAL_ATTEMPTS + 1):
        start_state = await start_sync.with_options(**fresh)(
            scope, source_id, attempt, trigger, return_state=True
        )
        started = await start_state.result()
        poll_state = await wait_for_run.with_options(**fresh)(
            scope, started.run_id, poll, expected_seconds, return_state=True
        )
        finished = await poll_state.result()
        if start_state.name != "Cached" or poll_state.name != "Cached":
            new_attempts += 1
        attempts.append(finished)
        if finished.status == RunStatus.SUCCEEDED:
            break
        if new_attempts >= max_sync_attempts:
            raise StepError(
                "sync",
                scope.source_key,
                f"{new_attempts} sync attempt(s) in this run failed; last run {finished.run_id} ended "
                f"{finished.status}: {finished.error_message or 'no error message'}",
                f"fix the cause, then resume with sync_id={scope.sync_id} to try again",
            )
        logger.warning("Run %s ended %s; starting attempt %s", finished.run_id, finished.status, attempt + 1)
    else:
        raise StepError("sync", scope.source_key, f"gave up after {MAX_TOTAL_ATTEMPTS} attempts in total")
    assert finished is not None
    zero = not finished.records_synced
    ingest = await enqueue_ingest.with_options(**fresh)(scope, source_id, finished.run_id)
    if ingest.ingest_run_ids and wait_ready:
        ingest = await wait_for_ingest.with_options(**fresh)(
            scope, finished.run_id, ingest.ingest_run_ids, poll
        )
    return SyncOutcome(run=finished, attempts=attempts, ingest=ingest, zero_records=zero)


def outcome_steps(outcome: SyncOutcome) -> list[dict[str, Any]]:
    """The sync and ingest rows of a pipeline summary."""
    steps = [{"step": "sync", "result": f"run {outcome.run.run_id} {outcome.run.status}"}]
    if outcome.ingest is not None:
        statuses = ", ".join(sorted(set(outcome.ingest.statuses.values())))
        steps.append({"step": "ingest", "result": statuses or "skipped"})
    return steps


def summarise(
    scope: Scope, source_id: int, outcome: SyncOutcome | None, steps: list[dict[str, Any]]
) -> PipelineSummary:
    summary = PipelineSummary(
        tenant=scope.tenant,
        source_key=scope.source_key,
        source_id=source_id,
        sync_id=scope.sync_id,
        status="connected",
        steps=steps,
    )
    if outcome is None:
        return summary
    run, ingest = outcome.run, outcome.ingest
    summary.run_id = run.run_id
    summary.status = run.status
    summary.records_synced = run.records_synced
    summary.bytes_synced = run.bytes_synced
    summary.sync_attempts = len(outcome.attempts)
    if outcome.zero_records:
        summary.warnings.append(f"run {run.run_id} succeeded with 0 records")
    if ingest is not None:
        summary.ingest_run_ids = ingest.ingest_run_ids
        summary.documents = ingest.documents
        if ingest.skipped_reason:
            summary.ingest_status = f"skipped ({ingest.skipped_reason})"
        else:
            values = set(ingest.statuses.values())
            summary.ingest_status = (
                values.pop() if len(values) == 1 else ", ".join(sorted(values)) or "enqueued"
            )
    return summary


async def publish_summary(summary: PipelineSummary) -> None:
    ingest_runs = ", ".join(summary.ingest_run_ids) or "-"
    rows = "\n".join(f"| {s['step']} | {s['result']} |" for s in summary.steps)
    warnings = "\n".join(f"- ⚠ {w}" for w in summary.warnings) or "- none"
    markdown = f"""# Splendor pipeline: `{summary.source_key}`

| field | value |
|---|---|
| tenant | `{summary.tenant}` |
| source id | `{summary.source_id}` |
| sync_id (resume with this) | `{summary.sync_id}` |
| run | `{summary.run_id}` → **{summary.status}** after {summary.sync_attempts} attempt(s) |
| records / bytes | {summary.records_synced} / {summary.bytes_synced} |
| ingest | {summary.ingest_status} ({summary.documents} documents, runs {ingest_runs}) |

## Steps

| step | result |
|---|---|
{rows}

## Warnings

{warnings}

To resume a failed run: press **Retry** on it in the Prefect UI, or start a new run with
`sync_id = {summary.sync_id}`.
"""
    key = f"splendor-{artifact_slug(summary.source_key)}"
    await acreate_markdown_artifact(markdown=markdown, key=f"{key}-summary", description="Pipeline summary")
    if summary.run_id is not None:
        await acreate_table_artifact(
            table=[
                {
                    "source_key": summary.source_key,
                    "run_id": summary.run_id,
                    "status": summary.status,
                    "records": summary.records_synced,
                    "bytes": summary.bytes_synced,
                    "ingest": summary.ingest_status,
                    "documents": summary.documents,
                    "sync_id": summary.sync_id,
                }
            ],
            key=f"{key}-sync",
            description="Latest sync of this source",
        )
