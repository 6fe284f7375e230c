"""Step 7: hand the landed data to ingestion and wait until it is searchable."""

import asyncio
import time

from prefect import get_run_logger, task

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorClient, SplendorError, models
from splendor_api.models import INGEST_ACTIVE, INGEST_TERMINAL_BAD, INGEST_TERMINAL_OK
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.polling import PollOptions, next_delay
from splendor_flows.engine.results import IngestResult
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import STEP_OPTIONS, Scope
from splendor_flows.orchestration.events import emit


async def _already_enqueued(client: SplendorClient, source_id: int, run_id: int) -> list[models.IngestRun]:
    runs = await client.list_ingest_runs(source_id=source_id)
    return [r for r in runs if r.connector_run_id == run_id]


async def hand_off(
    client: SplendorClient, scope: Scope, source_id: int, run_id: int, *, look_first: bool = True
) -> IngestResult:
    """Enqueue a succeeded run for ingestion, once.

    `look_first` reads the source's ingest runs before enqueueing. The API returns the same ingest
    runs for a run enqueued twice, so the read is a second layer, worth its call whenever someone
    else may already have enqueued the run (a resume, an attached run).
    """
    logger = get_run_logger()
    runs = await _already_enqueued(client, source_id, run_id) if look_first else []
    if runs:
        logger.info("Run %s was already handed to ingestion", run_id)
    else:
        try:
            runs = await client.enqueue_ingest(source_id, run_id)
        except Conflict as exc:
            if exc.code != "no_landed_data":
                raise
            logger.warning("Run %s landed no data: nothing to ingest", run_id)
            return IngestResult(
                run_id=run_id, ingest_run_ids=[], statuses={}, documents=0, skipped_reason="no landed data"
            )
        except OutcomeUnknown:
            # The enqueue may have happened before the connection dropped: look before retrying.
            runs = await _already_enqueued(client, source_id, run_id)
            if not runs:
                raise
        emit(
            "splendor.ingest.enqueued",
            scope,
            {"run_id": run_id, "ingest_run_ids": [r.ingest_run_id for r in runs]},
        )
    return IngestResult(
        run_id=run_id,
        ingest_run_ids=[r.ingest_run_id for r in runs],
        statuses={r.ingest_run_id: r.status for r in runs},
        documents=0,
    )


@task(name="enqueue-ingest", **STEP_OPTIONS)
async def enqueue_ingest(scope: Scope, source_id: int, run_id: int) -> IngestResult:
    async with open_client(scope.credentials_block) as client:
        return await hand_off(client, scope, source_id, run_id)


def _documents(run: models.IngestRun) -> int:
    docs = run.documents
    if docs is None:
        return 0
    return docs.index_committed or docs.parsed or 0


@task(name="ingest-ready", **STEP_OPTIONS)
async def wait_for_ingest(
    scope: Scope, run_id: int, ingest_run_ids: list[str], poll: PollOptions | None = None
) -> IngestResult:
    poll = poll or PollOptions()
    logger = get_run_logger()
    began = time.monotonic()
    pending = set(ingest_run_ids)
    final: dict[str, models.IngestRun] = {}
    polls = 0
    async with open_client(scope.credentials_block) as client:
        while pending:
            for ingest_id in sorted(pending):
                try:
                    run = await client.get_ingest_run(ingest_id)
                except NotFound:
                    raise PermanentStepError(
                        "ingest", scope.source_key, f"ingest run {ingest_id} vanished"
                    ) from None
                except SplendorError as exc:
                    logger.warning("Reading ingest run %s failed (%s); will try again", ingest_id, exc)
                    continue
                if run.status in INGEST_TERMINAL_OK or run.status in INGEST_TERMINAL_BAD:
                    final[ingest_id] = run
                    pending.discard(ingest_id)
                elif run.status not in INGEST_ACTIVE:
                    raise PermanentStepError(
                        "ingest",
                        scope.source_key,
                        f"ingest run {ingest_id} has an unknown status '{run.status}'",
                    )
            polls += 1
            if not pending:
                break
            if time.monotonic() - began > poll.deadline_seconds:
                raise DeadlineExceeded(
                    "ingest",
                    scope.source_key,
                    f"ingestion not ready after {poll.deadline_seconds:.0f} s",
                    "resume with the same sync_id to keep waiting",
                )
            await asyncio.sleep(next_delay(poll, polls, time.monotonic() - began))
    statuses = {k: v.status for k, v in final.items()}
    failed = {k: v for k, v in final.items() if v.status in INGEST_TERMINAL_BAD}
    result = IngestResult(
        run_id=run_id,
        ingest_run_ids=ingest_run_ids,
        statuses=statuses,
        documents=sum(_documents(v) for v in final.values()),
    )
    if failed:
        reasons = "; ".join(f"{k}: {v.status} {v.error_message or ''}".strip() for k, v in failed.items())
        emit("splendor.ingest.failed", scope, {"run_id": run_id, "failed": sorted(failed)})
        raise PermanentStepError("ingest", scope.source_key, f"ingestion failed ({reasons})")
    logger.info("Ingestion of run %s is ready: %s documents", run_id, result.documents)
    emit(
        "splendor.ingest.ready",
        scope,
        {"run_id": run_id, "documents": result.documents, "ingest_run_ids": ingest_run_ids},
    )
    return result
