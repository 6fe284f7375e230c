"""Steps 5 and 6 as Prefect tasks: start a sync (or attach to the one in flight) and wait for it.

The state machine is the engine's (`engine.sync`); these tasks give it a checkpoint (the persisted
result: the start's exists the moment the run id is known, so a resumed pipeline polls that run
instead of starting another), retries, events, logs and a progress artifact.
"""

from prefect import task

from splendor_flows.engine import sync
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.results import FinishedRun, StartedRun
from splendor_flows.engine.scope import Step
from splendor_flows.orchestration.checkpoint import step_options
from splendor_flows.orchestration.engine_adapter import run_history, step_context
from splendor_flows.orchestration.scope import Scope


@task(name=Step.SYNC, **step_options(Step.SYNC, ordinals=("source_id", "attempt")))
async def start_sync(scope: Scope, source_id: int, attempt: int, trigger: str = "manual") -> StartedRun:
    async with step_context(scope, Step.SYNC, records=True) as ctx:
        started, _ = await sync.start_or_attach(ctx, source_id, attempt, trigger)
    return started


@task(name=Step.POLL, **step_options(Step.POLL, ordinals=("run_id",), retries=1))
async def poll_run(
    scope: Scope, run_id: int, poll: PollOptions | None = None, expected_seconds: float | None = None
) -> FinishedRun:
    history = run_history()
    progress = ("splendor-sync-progress", f"run {run_id} of {scope.source_key}")
    async with step_context(scope, Step.POLL, history=history, progress=progress) as ctx:
        finished = await sync.wait_and_finish(
            ctx, run_id, poll or PollOptions(), expected_seconds=expected_seconds
        )
    history.save()
    return finished
