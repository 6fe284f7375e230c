"""Which Splendor runs a pipeline started, kept where every worker can read it.

Splendor cannot say which run a given pipeline started, and a worker's local result files are not seen
by the next worker. So the pipeline records each start in a shared place (the Prefect API, see
`splendor_flows.orchestration.run_records`): first the intent, before the start call is sent, then the
run id once the answer arrives. A resume anywhere reads the record before it would start a run:

- the record names a run: attach to it (poll it; if it already finished, take its outcome);
- the record holds an intent without a run id: the answer was lost (a crash, a dropped connection),
  so a run may exist that nobody knows of; look for it (see `engine.sync`) and never start blindly;
- no record: nothing was ever sent for this attempt; start.
"""

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel


class StartRecord(BaseModel):
    attempt: int
    requested_at: datetime
    run_id: int | None = None


class PipelineRuns(BaseModel):
    """The start records of one pipeline (api, tenant, source, sync_id), newest attempt last."""

    starts: list[StartRecord] = []

    def of_attempt(self, attempt: int) -> StartRecord | None:
        return next((s for s in reversed(self.starts) if s.attempt == attempt), None)

    def with_start(self, record: StartRecord, keep: int) -> "PipelineRuns":
        others = [s for s in self.starts if s.attempt != record.attempt]
        return PipelineRuns(starts=[*others, record][-keep:])


class RunRecords(Protocol):
    """Shared storage of start records, keyed by an opaque pipeline key."""

    async def read(self, pipeline: str) -> PipelineRuns: ...

    async def write(self, pipeline: str, runs: PipelineRuns) -> None: ...


class MemoryRunRecords:
    """In-process records: for engine tests and one-process runs without a Prefect API."""

    def __init__(self) -> None:
        self.saved: dict[str, PipelineRuns] = {}

    async def read(self, pipeline: str) -> PipelineRuns:
        return self.saved.get(pipeline, PipelineRuns())

    async def write(self, pipeline: str, runs: PipelineRuns) -> None:
        self.saved[pipeline] = runs
