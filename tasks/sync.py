"""Steps 5 and 6: start a sync (or attach to the one in flight) and wait for it to finish.

The start checkpoint exists the moment the run id is known, so a resumed pipeline polls that run
instead of starting another. A failed poll *request* never fails the *sync*: only the deadline,
a vanished run or an unknown status do.
"""

import asyncio
import time

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorError, models
from splendor_api.models import (
    RUN_ACTIVE,
    RUN_TERMINAL,
    RunStatus,
)
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.history import RunHistory, run_age, run_duration
from splendor_flows.engine.polling import Expectation, PollOptions, PollPlan
from splendor_flows.engine.results import FinishedRun, StartedRun
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import STEP_OPTIONS, Scope
from splendor_flows.orchestration.events import emit

# How many times an "outcome unknown" start is re-sent within one task attempt: the next try gets
# 409 sync_in_progress (and attaches) when the first one did start.
_START_TRIES = 3


@task(name="sync", **STEP_OPTIONS)
async def start_sync(scope: Scope, source_id: int, attempt: int, trigger: str = "manual") -> StartedRun:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        for try_number in range(1, _START_TRIES + 1):
            try:
                run = await client.start_sync(source_id, trigger)
            except Conflict as exc:
                if exc.code == "sync_in_progress" and exc.run_id is not None:
                    current = await client.get_run(exc.run_id)
                    logger.info("A sync is already in flight (run %s): attaching to it", exc.run_id)
                    return StartedRun(
                        run_id=current.run_id, attempt=attempt, attached=True, status=current.status
                    )
                if exc.code == "no_connection":
                    raise PermanentStepError(
                        "sync", scope.source_key, "the source has no connection", "run connect_source first"
                    ) from None
                raise
            except OutcomeUnknown:
                if try_number == _START_TRIES:
                    raise
                logger.warning("Start-sync outcome unknown; asking again (a 409 means it did start)")
                continue
            logger.info("Started sync run %s (attempt %s)", run.run_id, attempt)
            emit(
                "splendor.sync.started",
                scope,
                {"source_id": source_id, "run_id": run.run_id, "attempt": attempt},
            )
            return StartedRun(run_id=run.run_id, attempt=attempt, attached=False, status=run.status)
    raise AssertionError("unreachable")


def check_status_known(scope: Scope, run: models.ConnectorRun) -> None:
    """Fail closed on a status outside the contract rather than guess whether it is terminal."""
    if run.status not in RUN_TERMINAL and run.status not in RUN_ACTIVE:
        raise PermanentStepError(
            "poll",
            scope.source_key,
            f"run {run.run_id} has an unknown status '{run.status}'",
            "the API may have changed; the pipeline stops rather than guess",
        )


def report_finished(scope: Scope, run: models.ConnectorRun, polls: int) -> FinishedRun:
    """The poll checkpoint of a terminal run, announced as splendor.sync.succeeded or .failed."""
    finished = FinishedRun(
        run_id=run.run_id,
        status=run.status,
        records_synced=run.records_synced,
        bytes_synced=run.bytes_synced,
        error_message=run.error_message,
        duration_seconds=run_duration(run.created_at, run.completed_at),
        polls=polls,
    )
    outcome = "succeeded" if run.status == RunStatus.SUCCEEDED else "failed"
    emit(f"splendor.sync.{outcome}", scope, finished.model_dump(exclude={"polls"}))
    return finished


@task(name="poll", **{**STEP_OPTIONS, "retries": 1})
async def wait_for_run(
    scope: Scope,
    run_id: int,
    poll: PollOptions | None = None,
    expected_seconds: float | None = None,
) -> FinishedRun:
    poll = poll or PollOptions()
    logger = get_run_logger()
    began = time.monotonic()
    polls = 0
    progress_id = await acreate_progress_artifact(
        progress=0.0, key="splendor-sync-progress", description=f"run {run_id} of {scope.source_key}"
    )
    last_status = ""
    # An explicit expected duration wins; otherwise earlier runs of this source say when to look.
    history = RunHistory().load()
    expectation = (
        Expectation.from_durations([expected_seconds])
        if expected_seconds
        else history.expectation(scope.tenant, scope.source_key)
    )
    plan = PollPlan(poll, expectation)
    async with open_client(scope.credentials_block) as client:
        while True:
            retry_after: float | None = None
            try:
                run = await client.refresh_run(run_id)
                polls += 1
            except NotFound:
                raise PermanentStepError("poll", scope.source_key, f"run {run_id} no longer exists") from None
            except SplendorError as exc:
                # The sync itself is unaffected by our failed request: keep waiting until the deadline.
                logger.warning("Polling run %s failed (%s); will try again", run_id, exc)
                retry_after = getattr(exc, "retry_after", None)
                run = None
            if run is not None:
                plan.observe(run.status)
                if run.status != last_status:
                    logger.info("Run %s is %s", run_id, run.status)
                    last_status = run.status
                if run.status in RUN_TERMINAL:
                    break
                check_status_known(scope, run)
                age = run_age(run.created_at)
                if expected_seconds and age is not None:
                    await aupdate_progress_artifact(progress_id, min(99.0, 100.0 * age / expected_seconds))
            waited = time.monotonic() - began
            if waited > poll.deadline_seconds:
                raise DeadlineExceeded(
                    "poll",
                    scope.source_key,
                    f"run {run_id} still not finished after {poll.deadline_seconds:.0f} s",
                    "the run keeps going in Splendor; resume with the same sync_id to keep waiting",
                )
            # Run durations in the history are measured from creation, so the age must be too.
            age = (run_age(run.created_at) if run is not None else None) or waited
            await asyncio.sleep(plan.delay(age, retry_after))
    await aupdate_progress_artifact(progress_id, 100.0)
    finished = report_finished(scope, run, polls)
    if run.status == RunStatus.SUCCEEDED:
        if finished.duration_seconds is not None:
            history.record(scope.tenant, scope.source_key, finished.duration_seconds)
            history.save()
        if not run.records_synced:
            logger.warning(
                "Run %s succeeded with 0 records: check the source's filters and credentials", run_id
            )
    else:
        logger.error("Run %s ended %s: %s", run_id, run.status, run.error_message or "no error message")
    return finished
