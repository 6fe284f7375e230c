"""Which Splendor runs a pipeline started, kept where every worker can read it.

Splendor cannot say which run a given pipeline started, and one worker's result files are not seen
by the next worker. So the pipeline records each start in a shared place (Prefect Variables, or the
result storage when every worker shares it; see `splendor_flows.orchestration.run_records`): first
the intent, before the start call is sent, then the run id once the answer arrives. A resume on any
worker reads the record before it would start:

- the record names a run: attach to it (poll it; if it already finished, take its outcome);
- the record holds an intent without a run id: the answer was lost (a crash, a dropped connection),
  so a run may exist that nobody knows of; look for it and never start blindly (`engine.sync`);
- no record: nothing was ever sent for this attempt; start.

One record per source keeps the latest starts of every pipeline of that source (a bounded list), so
the number of records grows with the sources, not with the syncs.
"""

import hashlib
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel

from splendor_flows.engine.scope import ScopeLike

# Starts kept per source: enough for the attempts of the few pipelines of one source that may still
# be resumed (a start older than this many others is for a sync nobody will resume).
KEEP = 24


def source_digest(scope: ScopeLike) -> str:
    """Names a source's record wherever it is kept: (API base, tenant, source key), digested."""
    return hashlib.sha256(f"{scope.api_base}|{scope.tenant}|{scope.source_key}".encode()).hexdigest()[:32]


def pipeline_of(scope: ScopeLike) -> str:
    """The pipeline's id inside its source's record: a digest, so a sync_id is not stored as such."""
    return hashlib.sha256(scope.sync_id.encode()).hexdigest()[:16]


class StartRecord(BaseModel):
    pipeline: str
    attempt: int
    requested_at: datetime
    run_id: int | None = None


class SourceRuns(BaseModel):
    starts: list[StartRecord] = []

    def find(self, pipeline: str, attempt: int) -> StartRecord | None:
        return next(
            (s for s in reversed(self.starts) if (s.pipeline, s.attempt) == (pipeline, attempt)), None
        )

    def with_start(self, record: StartRecord) -> "SourceRuns":
        others = [s for s in self.starts if (s.pipeline, s.attempt) != (record.pipeline, record.attempt)]
        return SourceRuns(starts=[*others, record][-KEEP:])

    def without(self, pipeline: str, attempt: int) -> "SourceRuns":
        return SourceRuns(starts=[s for s in self.starts if (s.pipeline, s.attempt) != (pipeline, attempt)])


class RunRecords(Protocol):
    """Shared storage of the start records of each source (api, tenant, source key)."""

    async def read(self, scope: ScopeLike) -> SourceRuns: ...

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None: ...

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        """Record a start about to be sent (`start`, without a run id) over `runs`, the source's records
        as the caller knows them. A store may keep the intents of many sources together (one write
        for a whole fleet's batch); a read of the source then returns them with its records."""
        ...

    def forget_hint(self, scope: ScopeLike) -> str:
        """How an operator drops this source's records (e.g. after settling an unknown start by hand)."""
        ...


class HeldRecords:
    """One source's records as the holder of its slot sees them: read from the store once, then known
    from its own writes.

    Only the source's holder writes its records (orchestration.source_lock), so while it holds, what it
    last read or wrote is what the store has. Reading again before each write cost a store call per
    start (a Prefect API call: a thousand per fleet of a thousand sources). Made for one hold and never
    kept past it: between two holds another pipeline may have written.
    """

    def __init__(self, store: RunRecords) -> None:
        self._store = store
        self._known: dict[tuple[str, str, str], SourceRuns] = {}

    @staticmethod
    def _key(scope: ScopeLike) -> tuple[str, str, str]:
        return (scope.api_base, scope.tenant, scope.source_key)

    async def read(self, scope: ScopeLike) -> SourceRuns:
        key = self._key(scope)
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = await self._store.read(scope)
        return known

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        key = self._key(scope)
        # Whether a failed write landed is unknown: the next read asks the store.
        self._known.pop(key, None)
        await self._store.write(scope, runs)
        self._known[key] = runs

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        key = self._key(scope)
        self._known.pop(key, None)
        await self._store.intend(scope, runs, start)
        self._known[key] = runs.with_start(start)

    def forget_hint(self, scope: ScopeLike) -> str:
        return self._store.forget_hint(scope)


class MemoryRunRecords:
    """In-process records: for engine tests and one-process runs."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str, str], SourceRuns] = {}

    @staticmethod
    def _key(scope: ScopeLike) -> tuple[str, str, str]:
        return (scope.api_base, scope.tenant, scope.source_key)

    async def read(self, scope: ScopeLike) -> SourceRuns:
        return self.saved.get(self._key(scope), SourceRuns())

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        self.saved[self._key(scope)] = runs

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        await self.write(scope, runs.with_start(start))

    def forget_hint(self, scope: ScopeLike) -> str:
        return "clear the run records of this source"


class RecordFiles(Protocol):
    """Files in a store every worker shares (a network path, a bucket)."""

    async def read(self, name: str) -> bytes | None:
        """The file's bytes; None only when it certainly does not exist (any other failure raises: a
        record read as missing because the store hiccupped would let a resume start a second run)."""
        ...

    async def write(self, name: str, content: bytes) -> None:
        """Replace the file whole: a reader sees the old bytes or the new, never a part."""
        ...


class StoredRunRecords:
    """Records kept as files beside the checkpoints, in the result storage every worker shares:
    reading and writing them costs the Prefect server nothing, where Variables cost it two or three
    API calls and an event per start. Worth it only when that storage really is shared: a
    worker-local one would hide one worker's starts from the next."""

    PREFIX = "splendor-run-records"

    def __init__(self, files: RecordFiles) -> None:
        self._files = files

    def name(self, scope: ScopeLike) -> str:
        return f"{self.PREFIX}/{source_digest(scope)}.json"

    async def read(self, scope: ScopeLike) -> SourceRuns:
        content = await self._files.read(self.name(scope))
        return SourceRuns() if content is None else SourceRuns.model_validate_json(content)

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        await self._files.write(self.name(scope), runs.model_dump_json().encode())

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        # A file write costs the Prefect server nothing: no reason to gather intents.
        await self.write(scope, runs.with_start(start))

    def forget_hint(self, scope: ScopeLike) -> str:
        return f"delete '{self.name(scope)}' from the result storage"


class MemoryFiles:
    """Record files in a dict: engine tests."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    async def read(self, name: str) -> bytes | None:
        return self.saved.get(name)

    async def write(self, name: str, content: bytes) -> None:
        self.saved[name] = content
