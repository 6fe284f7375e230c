"""A soak worker process: runs a batch of pipeline phases a few at a time and reports each outcome.

The runner SIGKILLs these processes at random, so the report file is the only thing the runner
trusts: a phase with a `start` line and no `done`/`failed` line was interrupted and gets resumed.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

from soak.jobs import Job, Report, spec_for

# Short polls: soak runs last seconds, not hours.
POLL = {"initial_seconds": 0.3, "cap_seconds": 1.5, "deadline_seconds": 240}


async def run_job(job: Job) -> Report:
    from splendor_flows.flows.connect_source import connect_source
    from splendor_flows.flows.sync_source import sync_source

    began = time.monotonic()
    if job.phase == "connect":
        state = await connect_source(
            spec=spec_for(job.source_key), sync_id=job.sync_id, poll=POLL, return_state=True
        )
    else:
        state = await sync_source(
            source_key=job.source_key, sync_id=job.sync_id, poll=POLL, return_state=True
        )
    result: Any = await state.aresult(raise_on_failure=False)
    base = job.model_dump() | {"seconds": round(time.monotonic() - began, 2)}
    if state.is_completed() and not isinstance(result, BaseException):
        return Report(
            event="done",
            run_id=result.run_id,
            run_status=result.status,
            ingest_run_ids=list(result.ingest_run_ids),
            ingest_status=result.ingest_status,
            **base,
        )
    error = result if isinstance(result, BaseException) else None
    if error is None:
        return Report(
            event="failed", error_type=state.type.value, error=state.message or "no message", **base
        )
    return failure(error, base)


def failure(error: BaseException, base: dict[str, Any]) -> Report:
    """A failed phase as the CLI would state it: a Prefect API outage is named as one."""
    from splendor_flows.orchestration.prefect_outage import prefect_outage

    outage = prefect_outage(error)
    if outage is not None:
        return Report(event="failed", error_type=type(outage).__name__, error=str(outage), **base)
    return Report(event="failed", error_type=type(error).__name__, error=str(error), **base)


def write(out: IO[str], report: Report) -> None:
    out.write(report.model_dump_json() + "\n")
    out.flush()


async def main(jobs: list[Job], out_path: Path, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    with out_path.open("a") as out:

        async def one(job: Job) -> None:
            async with gate:
                write(out, Report(event="start", **job.model_dump()))
                try:
                    report = await run_job(job)
                except Exception as exc:  # the flow machinery broke (no flow run): still report it
                    report = failure(exc, job.model_dump())
                write(out, report)

        await asyncio.gather(*(one(job) for job in jobs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="soak worker (started by python -m soak)")
    parser.add_argument("--jobs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    batch = [Job.model_validate(item) for item in json.loads(args.jobs.read_text())]
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from splendor_flows.orchestration.prefect_outage import riding_out_prefect_outages

    # The heartbeat thread costs about a second per flow run and nothing watches it here. A busy
    # Prefect server (SQLite locked by the other workers) is waited out as the CLI waits it out.
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        riding_out_prefect_outages(),
    ):
        asyncio.run(main(batch, args.out, args.concurrency))
    sys.exit(0)
