"""Step 7 as Prefect tasks: hand the landed data to ingestion once, and wait until it is searchable.

The logic is the engine's (`engine.ingest`); these tasks give it a checkpoint, retries and events.
"""

from prefect import task

from splendor_flows.engine import ingest
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.results import IngestResult
from splendor_flows.engine.scope import Step
from splendor_flows.orchestration.checkpoint import step_options
from splendor_flows.orchestration.engine_adapter import step_context
from splendor_flows.orchestration.scope import Scope


@task(name=Step.ENQUEUE_INGEST, **step_options(Step.ENQUEUE_INGEST, ordinals=("run_id",)))
async def enqueue_ingest(scope: Scope, source_id: int, run_id: int, look_first: bool = True) -> IngestResult:
    async with step_context(scope, Step.INGEST) as ctx:
        return await ingest.enqueue_or_find(ctx, source_id, run_id, look_first=look_first)


@task(name=Step.INGEST_READY, **step_options(Step.INGEST_READY, ordinals=("run_id",)))
async def await_ingest_ready(
    scope: Scope, run_id: int, ingest_run_ids: list[str], poll: PollOptions | None = None
) -> IngestResult:
    async with step_context(scope, Step.INGEST) as ctx:
        return await ingest.wait_for_ingest(ctx, run_id, ingest_run_ids, poll or PollOptions())
