"""One source's sync → wait → ingest, the same sequence for every caller.

The sequence takes its steps as an object, because callers checkpoint them differently: the
per-step flows run each step as a Prefect task (its checkpoint is the task's persisted result), the
fleet runs them in-process with a `CheckpointStore` (`StoredSteps`). Both use the same keys, so
either can pick up a pipeline the other left unfinished.
"""

from typing import Protocol

from splendor_api import models
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.ingest import enqueue_or_find, wait_for_ingest
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.report import Reporter
from splendor_flows.engine.results import FinishedRun, IngestResult, StartedRun, SyncOutcome
from splendor_flows.engine.scope import ScopeLike, Step
from splendor_flows.engine.store import CheckpointStore, checkpoint_key, checkpointed
from splendor_flows.engine.sync import start_or_attach, sync_attempts, wait_and_finish


class SyncSteps(Protocol):
    """The checkpointed steps; `start` and `wait` also say whether the value came from a checkpoint."""

    async def start(self, attempt: int) -> tuple[StartedRun, bool]: ...

    async def wait(self, started: StartedRun) -> tuple[FinishedRun, bool]: ...

    async def enqueue(self, run_id: int, look_first: bool) -> IngestResult: ...

    async def wait_ingest(self, enqueued: IngestResult) -> IngestResult: ...


async def sync_and_ingest(
    scope: ScopeLike, report: Reporter, steps: SyncSteps, *, max_sync_attempts: int, wait_ready: bool
) -> SyncOutcome:
    """Sync until a run succeeds (see `sync_attempts`), hand it to ingestion, and wait if asked."""
    attempts = await sync_attempts(
        scope, report, steps.start, steps.wait, max_sync_attempts=max_sync_attempts
    )
    finished = attempts.runs[-1]
    report.step(Step.ENQUEUE_INGEST, finished.run_id)
    # A run this pass started itself cannot have been handed over by anyone yet: skip the look.
    ingest = await steps.enqueue(finished.run_id, attempts.resumed)
    if ingest.ingest_run_ids and wait_ready:
        report.step(Step.INGEST_READY, finished.run_id)
        ingest = await steps.wait_ingest(ingest)
    return SyncOutcome(
        run=finished,
        attempts=attempts.runs,
        ingest=ingest,
        zero_records=not finished.records_synced,
        resumed=attempts.resumed,
        polls=attempts.polls,
    )


class StoredSteps:
    """The steps run in this process, each checkpointed in `store` under the per-step tasks' keys."""

    def __init__(
        self,
        ctx: SourceContext,
        store: CheckpointStore,
        *,
        source_id: int,
        trigger: str,
        poll: PollOptions,
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.source_id = source_id
        self.trigger = trigger
        self.poll = poll
        # The start call's answer: the wait that follows need not ask again at once.
        self._answers: dict[int, models.ConnectorRun] = {}

    def _key(self, step: Step, **ordinals: int) -> str:
        return checkpoint_key(step, self.ctx.scope, inputs=None, **ordinals)

    async def start(self, attempt: int) -> tuple[StartedRun, bool]:
        async def produce() -> StartedRun:
            started, run = await start_or_attach(self.ctx, self.source_id, attempt, self.trigger)
            self._answers[started.run_id] = run
            return started

        return await checkpointed(
            self.store, self._key(Step.SYNC, source_id=self.source_id, attempt=attempt), StartedRun, produce
        )

    async def wait(self, started: StartedRun) -> tuple[FinishedRun, bool]:
        known = self._answers.pop(started.run_id, None)

        async def produce() -> FinishedRun:
            return await wait_and_finish(self.ctx, started.run_id, self.poll, known=known)

        key = self._key(Step.POLL, run_id=started.run_id)
        return await checkpointed(self.store, key, FinishedRun, produce)

    async def enqueue(self, run_id: int, look_first: bool) -> IngestResult:
        async def produce() -> IngestResult:
            return await enqueue_or_find(self.ctx, self.source_id, run_id, look_first=look_first)

        key = self._key(Step.ENQUEUE_INGEST, run_id=run_id)
        return (await checkpointed(self.store, key, IngestResult, produce))[0]

    async def wait_ingest(self, enqueued: IngestResult) -> IngestResult:
        async def produce() -> IngestResult:
            return await wait_for_ingest(self.ctx, enqueued.run_id, enqueued.ingest_run_ids, self.poll)

        key = self._key(Step.INGEST_READY, run_id=enqueued.run_id)
        return (await checkpointed(self.store, key, IngestResult, produce))[0]
