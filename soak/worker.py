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
    return Report(
        event="failed",
        error_type=type(error).__name__ if error else state.type.value,
        error=str(error) if error else (state.message or "no message"),
        **base,
    )


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
                except Exception as exc:  # the flow machinery itself broke: still report it
                    report = Report(
                        event="failed", error_type=type(exc).__name__, error=str(exc), **job.model_dump()
                    )
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

    # The heartbeat thread costs about a second per flow run and nothing watches it here.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        asyncio.run(main(batch, args.out, args.concurrency))
    sys.exit(0)
