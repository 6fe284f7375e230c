"""The part every pipeline shares: resolve the scope, then sync → wait → ingest with checkpoints.

The sequence and its sync state machine are the engine's (`engine.pipeline.sync_and_ingest`, the
same one the fleet runs); here each of its steps is a Prefect task whose persisted result is the
step's checkpoint, so a resumed run skips finished steps without an API call.
"""

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from pydantic import BaseModel

from splendor_api import SplendorError
from splendor_flows.engine import pipeline
from splendor_flows.engine.errors import label_failure
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.results import FinishedRun, IngestResult, StartedRun, SyncOutcome
from splendor_flows.engine.sync import MAX_TOTAL_ATTEMPTS
from splendor_flows.orchestration.artifact_slugs import artifact_slug
from splendor_flows.orchestration.connector_secrets import remember_credentials_of
from splendor_flows.orchestration.engine_adapter import PrefectReporter
from splendor_flows.orchestration.prefect_compat import call_task
from splendor_flows.orchestration.run_records import records_place
from splendor_flows.orchestration.scope import Scope, default_sync_id
from splendor_flows.orchestration.source_lock import hold_source
from splendor_flows.orchestration.splendor_clients import load_config, open_client
from splendor_flows.specs.source import validate_source_key
from splendor_flows.tasks.ingest import await_ingest_ready, enqueue_ingest
from splendor_flows.tasks.sync import poll_run, start_sync

# How long a run waits for another pipeline (a fleet, a repair, a schedule's tick) to finish with its
# source before it gives up: long enough for a sync of a big source to end.
SOURCE_WAIT_SECONDS = 3600.0

__all__ = [
    "MAX_TOTAL_ATTEMPTS",
    "PipelineSummary",
    "SyncOutcome",
    "resolve_scope",
    "sync_and_ingest_as_tasks",
]


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


def forced_sync_id(sync_id: str, run_id: str) -> str:
    """The sync_id of a forced run: its own, so its start is never taken for an earlier one's.

    Keyed on the flow run, so a Retry of the forced run (same flow-run id) resumes it instead of
    forcing yet another sync.
    """
    return f"{sync_id}.force-{run_id[:8]}"


async def resolve_scope(
    source_key: str,
    sync_id: str | None,
    credentials_block: str | None,
    *,
    pipeline: bool = True,
    force: bool = False,
) -> Scope:
    """Fix the checkpoint scope and check the token before anything else happens.

    `pipeline=False` (a flow that resumes nothing, e.g. repair-ingest) skips the log line that offers the
    sync_id for a resume. `force` gives the pipeline a sync_id of its own (`forced_sync_id`): the
    start records of the given sync_id would otherwise attach to the run it already started."""
    try:
        config = await load_config(credentials_block)
        records_place()  # where start records go: a bad setting stops here, before any call
    except SplendorError as exc:
        label_failure(exc, "preflight", source_key)
        raise
    validate_source_key(source_key)
    this_run = default_sync_id()
    given = sync_id or this_run
    scope = Scope(
        api_base=config.api_base,
        tenant=config.tenant,
        source_key=source_key,
        sync_id=forced_sync_id(given, this_run) if force else given,
        credentials_block=credentials_block,
    )
    async with open_client(credentials_block, step="preflight", source_key=source_key) as client:
        await client.preflight()
    # A run of a connected source never loads its connector credentials, yet Splendor may quote them
    # back (a run refused with "Invalid API Key provided: ..."): mask the values of the Secret block its
    # last provision recorded, before any of that text can reach a log, event or artifact.
    await remember_credentials_of(scope.tenant, [source_key])
    if not pipeline:
        return scope
    get_run_logger().info(
        "Pipeline for %s/%s with sync_id=%s (pass it to resume in a new run)",
        scope.tenant,
        scope.source_key,
        scope.sync_id,
    )
    return scope


class TaskSteps:
    """The engine's steps as Prefect tasks: a checkpoint hit comes back as a `Cached` state."""

    def __init__(
        self,
        scope: Scope,
        source_id: int,
        *,
        trigger: str,
        poll: PollOptions,
        expected_seconds: float | None,
    ) -> None:
        self.scope = scope
        self.source_id = source_id
        self.trigger = trigger
        self.poll = poll
        self.expected_seconds = expected_seconds

    async def start(self, attempt: int) -> tuple[StartedRun, bool]:
        return await call_task(start_sync, self.scope, self.source_id, attempt, self.trigger)

    async def wait(self, started: StartedRun) -> tuple[FinishedRun, bool]:
        return await call_task(poll_run, self.scope, started.run_id, self.poll, self.expected_seconds)

    async def enqueue(self, run_id: int, look_first: bool) -> IngestResult:
        return (await call_task(enqueue_ingest, self.scope, self.source_id, run_id, look_first))[0]

    async def wait_ingest(self, enqueued: IngestResult) -> IngestResult:
        return (
            await call_task(
                await_ingest_ready, self.scope, enqueued.run_id, enqueued.ingest_run_ids, self.poll
            )
        )[0]


async def sync_and_ingest_as_tasks(
    scope: Scope,
    source_id: int,
    *,
    trigger: str,
    max_sync_attempts: int,
    poll: PollOptions,
    wait_ready: bool,
    expected_seconds: float | None = None,
    source_wait_seconds: float = SOURCE_WAIT_SECONDS,
) -> SyncOutcome:
    """Sync → wait → ingest, holding the source (`source_lock`) so no other pipeline acts on it meanwhile."""
    steps = TaskSteps(scope, source_id, trigger=trigger, poll=poll, expected_seconds=expected_seconds)
    report = PrefectReporter(scope)
    async with hold_source(scope, wait_seconds=source_wait_seconds) as waited:
        if waited >= 1:
            report.log("info", f"Waited {waited:.0f} s for another pipeline to finish with this source")
        return await pipeline.sync_and_ingest(
            scope, report, steps, max_sync_attempts=max_sync_attempts, wait_ready=wait_ready
        )


def outcome_steps(outcome: SyncOutcome) -> list[dict[str, Any]]:
    """The sync and ingest rows of a pipeline summary."""
    steps = [{"step": "sync", "result": f"run {outcome.run.run_id} {outcome.run.status}"}]
    if outcome.ingest is not None:
        steps.append({"step": "ingest", "result": outcome.ingest.status_text()})
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
    summary.warnings.extend(outcome.warnings())
    if ingest is not None:
        summary.ingest_run_ids = ingest.ingest_run_ids
        summary.documents = ingest.documents
        summary.ingest_status = ingest.status_text()
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
