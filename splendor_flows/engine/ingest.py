"""Ingestion: hand a succeeded run to ingestion once, then wait until its data is searchable."""

from typing import Any

from splendor_api import Conflict, OutcomeUnknown, SplendorError, models
from splendor_api.models import INGEST_ACTIVE, INGEST_TERMINAL_BAD, INGEST_TERMINAL_OK
from splendor_flows.engine.client_protocol import ConflictCode
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.polling import PollGuard, PollOptions, PollPlan
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import IngestResult
from splendor_flows.engine.scope import Step

NO_LANDED_DATA = "no landed data"


def repair_hint(source_key: str, run_id: int) -> str:
    """What to do about a failed ingestion, wherever it is reported."""
    return (
        f"`splendor-flows repair {source_key} --run {run_id}` (or the repair-ingest deployment) hands it "
        "to ingestion again when the error is repairable"
    )


async def _enqueued(ctx: SourceContext, source_id: int, run_id: int) -> list[models.IngestRun]:
    runs = await ctx.api.list_ingest_runs(source_id=source_id)
    return [r for r in runs if r.connector_run_id == run_id]


async def enqueue_or_find(
    ctx: SourceContext, source_id: int, run_id: int, *, look_first: bool = True
) -> IngestResult:
    """Enqueue a succeeded run for ingestion, once.

    `look_first` reads the source's ingest runs before enqueueing. The API returns the same ingest
    runs for a run enqueued twice, so the read is a second layer, worth its call whenever someone
    else may already have enqueued the run (a resume, an attached run).
    """
    runs = await _enqueued(ctx, source_id, run_id) if look_first else []
    if runs:
        ctx.report.log("info", f"Run {run_id} was already handed to ingestion")
    else:
        try:
            runs = await ctx.api.enqueue_ingest(source_id, run_id)
        except Conflict as exc:
            if exc.code != ConflictCode.NO_LANDED_DATA:
                raise
            ctx.report.log("warning", f"Run {run_id} landed no data: nothing to ingest")
            return IngestResult(
                run_id=run_id, ingest_run_ids=[], statuses={}, documents=0, skipped_reason=NO_LANDED_DATA
            )
        except OutcomeUnknown:
            # The enqueue may have happened before the connection dropped: look before retrying.
            runs = await _enqueued(ctx, source_id, run_id)
            if not runs:
                raise
        ctx.report.event(
            Event.INGEST_ENQUEUED,
            {"source_id": source_id, "run_id": run_id, "ingest_run_ids": [r.ingest_run_id for r in runs]},
        )
    return IngestResult(
        run_id=run_id,
        ingest_run_ids=[r.ingest_run_id for r in runs],
        statuses={r.ingest_run_id: r.status for r in runs},
        documents=0,
    )


def _documents(run: models.IngestRun) -> int:
    docs = run.documents
    if docs is None:
        return 0
    return docs.index_committed or docs.parsed or 0


async def wait_for_ingest(
    ctx: SourceContext, run_id: int, ingest_run_ids: list[str], options: PollOptions
) -> IngestResult:
    """Poll the ingest runs of `run_id` until each is ready; raises when one ends badly."""
    final = await poll_ingest_runs(ctx, ingest_run_ids, options)
    return _report_ingest(ctx, run_id, ingest_run_ids, final)


async def poll_ingest_runs(
    ctx: SourceContext, ingest_run_ids: list[str], options: PollOptions
) -> dict[str, models.IngestRun]:
    """Poll ingest runs until each is terminal (ready or not); returns them by id."""
    plan = PollPlan(options)
    guard = PollGuard(ctx.clock, options, step=Step.INGEST, scope=ctx.scope)
    pending = set(ingest_run_ids)
    final: dict[str, models.IngestRun] = {}
    while True:
        last_status = ""
        for ingest_id in sorted(pending):
            try:
                run = await ctx.api.get_ingest_run(ingest_id)
            except SplendorError as exc:
                guard.failed(exc, f"ingest run {ingest_id}")
                continue
            guard.answered()
            last_status = run.status
            if run.status in INGEST_TERMINAL_OK or run.status in INGEST_TERMINAL_BAD:
                final[ingest_id] = run
                pending.discard(ingest_id)
            elif run.status not in INGEST_ACTIVE:
                raise PermanentStepError(
                    Step.INGEST,
                    ctx.scope.source_key,
                    f"ingest run {ingest_id} has an unknown status '{run.status}'",
                    "the API may have changed; the pipeline stops rather than guess",
                )
        if not pending:
            return final
        if last_status:
            plan.observe(last_status)
        guard.check_deadline("ingestion not ready")
        await ctx.clock.sleep(guard.pause_after(plan.delay(guard.elapsed())))


def failure_payload(run_id: int, failed: dict[str, models.IngestRun]) -> tuple[dict[str, Any], str]:
    """The splendor.ingest.failed payload for these failed ingest runs, and the reasons as one line.

    One shape wherever ingestion is found failed (after a sync, after a repair): the notification
    automation reads `error_message`, and `errors` keeps each run's code and message apart.
    """
    reasons = "; ".join(f"{k}: {v.status} {v.error_message or ''}".strip() for k, v in sorted(failed.items()))
    errors = [
        {"ingest_run_id": k, "status": v.status, "error_code": v.error_code, "error_message": v.error_message}
        for k, v in sorted(failed.items())
    ]
    # `error_message` repeats the reasons as one line, for notification templates.
    return {"run_id": run_id, "failed": sorted(failed), "errors": errors, "error_message": reasons}, reasons


def _report_ingest(
    ctx: SourceContext, run_id: int, ingest_run_ids: list[str], final: dict[str, models.IngestRun]
) -> IngestResult:
    result = IngestResult(
        run_id=run_id,
        ingest_run_ids=ingest_run_ids,
        statuses={k: v.status for k, v in final.items()},
        documents=sum(_documents(v) for v in final.values()),
    )
    failed = {k: v for k, v in final.items() if v.status in INGEST_TERMINAL_BAD}
    if failed:
        payload, reasons = failure_payload(run_id, failed)
        ctx.report.event(Event.INGEST_FAILED, payload)
        codes = ", ".join(sorted({v.error_code for v in failed.values() if v.error_code}))
        raise PermanentStepError(
            Step.INGEST,
            ctx.scope.source_key,
            f"ingestion failed for run {run_id} ({reasons})" + (f"; error codes: {codes}" if codes else ""),
            repair_hint(ctx.scope.source_key, run_id),
        )
    ctx.report.log("info", f"Ingestion of run {run_id} is ready: {result.documents} documents")
    ctx.report.event(
        Event.INGEST_READY,
        {"run_id": run_id, "documents": result.documents, "ingest_run_ids": ingest_run_ids},
    )
    return result
