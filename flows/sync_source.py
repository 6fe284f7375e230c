"""sync_source: the recurring job for an onboarded source (what schedules run).

No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from splendor_flows.engine.errors import CONNECT_FIRST, PermanentStepError
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.sync import MAX_TOTAL_ATTEMPTS
from splendor_flows.orchestration.failure_masking import masks_failures
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.source_pipeline import (
    PipelineSummary,
    outcome_steps,
    publish_summary,
    resolve_scope,
    summarise,
    sync_and_ingest_as_tasks,
)


@flow(name="sync-source", log_prints=False)
@masks_failures
async def sync_source(
    source_key: str,
    sync_id: str | None = None,
    force: bool = False,
    trigger: Literal["manual", "scheduled", "backfill"] = "scheduled",
    credentials_block: str | None = None,
    max_sync_attempts: Annotated[int, Field(ge=1, le=MAX_TOTAL_ATTEMPTS)] = 3,
    poll: PollOptions = PollOptions(),
    wait_for_ingest: bool = True,
    expected_seconds: float | None = None,
) -> PipelineSummary:
    """Sync → wait for the run → enqueue ingestion → wait until ready, for an existing source.

    Args:
        source_key: the source to sync (it must have been connected).
        sync_id: leave empty for a fresh sync; pass a failed run's sync_id to resume it.
        force: start a new sync even when this sync_id already has one (the run gets a sync_id of its
            own, `<sync_id>.force-<run>`: pass that one to resume it).
        trigger: how Splendor records the run.
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        max_sync_attempts: new sync runs this flow run may start when runs fail.
        poll: how to poll the sync and ingest runs.
        wait_for_ingest: wait until ingestion is `ready`.
        expected_seconds: typical run duration, to poll near the expected end.
    """
    scope = await resolve_scope(source_key, sync_id, credentials_block, force=force)
    async with open_client(credentials_block, step="sync", source_key=source_key) as client:
        source = await client.find_source(source_key)
        if source is None:
            raise PermanentStepError("sync", source_key, "no such source in the tenant", CONNECT_FIRST)
        state = await client.get_airbyte_source(source.source_id)
    if not state.airbyte.airbyte_connection_id:
        raise PermanentStepError("sync", source_key, "the source has no connection yet", CONNECT_FIRST)
    outcome = await sync_and_ingest_as_tasks(
        scope,
        source.source_id,
        trigger=trigger,
        max_sync_attempts=max_sync_attempts,
        poll=poll,
        wait_ready=wait_for_ingest,
        expected_seconds=expected_seconds,
    )
    steps = outcome_steps(outcome)
    summary = summarise(scope, source.source_id, outcome, steps)
    await publish_summary(summary)
    return summary
