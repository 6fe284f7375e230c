"""repair_ingest: hand the failed ingest runs of a source's syncs to ingestion again, and report what could
not be repaired.

The rules (which failures are queued again, how often, how many runs per call) are the engine's
(`engine.repair`); this flow gives them credentials, the run log, events and a table artifact. It keeps no
state of its own: Splendor records every repair, so a second run, or a run after a crash, picks up where
the first stopped and never queues an object twice.

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from pydantic import Field

from splendor_flows.engine.errors import CONNECT_FIRST, PermanentStepError
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.repair import MAX_ATTEMPTS_LIMIT, MAX_RUNS_LIMIT, RepairReport, repair_source
from splendor_flows.engine.scope import Step
from splendor_flows.orchestration.artifact_slugs import artifact_slug
from splendor_flows.orchestration.engine_adapter import step_context
from splendor_flows.orchestration.source_lock import hold_source
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.source_pipeline import SOURCE_WAIT_SECONDS, resolve_scope


@flow(name="repair-ingest", log_prints=False)
async def repair_ingest(
    source_key: str,
    run_id: Annotated[int | None, Field(ge=1)] = None,
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS_LIMIT)] = 3,
    max_runs: Annotated[int, Field(ge=1, le=MAX_RUNS_LIMIT)] = 10,
    poll: PollOptions = PollOptions(),
    credentials_block: str | None = None,
) -> RepairReport:
    """Queue failed ingest runs of the source's syncs again and wait until they are ready.

    Args:
        source_key: the source whose failed ingestion to repair.
        run_id: repair this sync run only; empty repairs the failed runs, newest first.
        max_attempts: repairs one run may have in all (Splendor counts them across calls).
        max_runs: runs this call repairs; the rest are reported as skipped.
        poll: how to poll the ingest runs.
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
    """
    scope = await resolve_scope(source_key, None, credentials_block, pipeline=False)
    async with open_client(credentials_block, step=Step.REPAIR, source_key=source_key) as client:
        source = await client.find_source(source_key)
    if source is None:
        raise PermanentStepError(Step.REPAIR, source_key, "no such source in the tenant", CONNECT_FIRST)
    # Held like any pipeline of the source: a sync's own ingestion and a repair never hand the same run
    # over at once.
    async with hold_source(scope, wait_seconds=SOURCE_WAIT_SECONDS), step_context(scope, Step.REPAIR) as ctx:
        report = await repair_source(
            ctx, source.source_id, run_id=run_id, max_attempts=max_attempts, max_runs=max_runs, poll=poll
        )
    await publish_report(report)
    for run in report.not_repaired():
        get_run_logger().warning("Run %s not repaired (%s): %s", run.run_id, run.verdict, run.reason)
    return report


async def publish_report(report: RepairReport) -> None:
    """One table row per run looked at: what it failed with, what was done, and why not when not."""
    await acreate_table_artifact(
        table=[
            {
                "run_id": run.run_id,
                "verdict": run.verdict.value,
                "error_codes": ", ".join(run.error_codes()),
                "attempts": run.attempts,
                "queued_now": run.enqueued,
                "reason": run.reason,
            }
            for run in report.runs
        ],
        key=f"splendor-{artifact_slug(report.source_key)}-repair",
        description=report.headline(),
    )
