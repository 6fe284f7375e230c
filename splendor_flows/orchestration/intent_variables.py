"""The intents of many sources' starts in one Prefect Variable: what lets a fleet send its starts at once.

A start is recorded (its intent) before it is sent, so that a resume never starts blindly after a lost
answer (engine.run_records). In a Variable per source, that is one write transaction and one
`prefect.variable.updated` event on the Prefect server per source before its start can leave. On a
200-source fleet the server took those writes about 20 a second: the last start left 9 to 14 s after
the first, where the bare script sends all of them in a fraction of a second, and that ramp was most
of what the fleet lost to it (docs/fleet.md).

So a run acting on many sources (a fleet, a shard, a tick) gathers the intents its sources make within
`GATHER_SECONDS` and writes them as one Variable, `splendor-intents-<random>` tagged
`splendor-run-intents` (up to `PER_VARIABLE` sources each, to stay under Prefect's 5,000 characters a
value). Its value names each source by the digest of its record and the (pipeline, attempt) it intends,
with one time taken before any of them was sent.

Reading a source's records merges these in: an entry naming the source counts as an intent without a
run id, unless the source's own record already has that (pipeline, attempt) or was written more than
`CLOCK_SKEW` after the intents variable was created. The second rule is what makes the source's own
record the final word: its holder writes it (with the run id, or without a withdrawn intent) after the
intents, and an operator settles a lost start by writing it. Only the source's holder writes either
variable, so nothing else can come between.

The writer deletes its intents variable once each of its sources has written its own record (normally
seconds after the starts, with the run ids). A writer killed before that leaves it behind: it is what
the resume reads, and `prune_settled` deletes it once every source it names has been written since.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.objects import Variable

from splendor_flows.engine.run_records import SourceRuns, StartRecord
from splendor_flows.orchestration.gathered import Gathered
from splendor_flows.orchestration.prefect_calls import prefect_call
from splendor_flows.orchestration.prefect_compat import read_variables_tagged

TAG = "splendor-run-intents"
PREFIX = "splendor-intents-"
# Intents made within this long of each other share a variable: a fleet's batch of sources reads its
# records and sends its intents within a few tens of milliseconds.
GATHER_SECONDS = 0.02
# 100 digests of 32 characters and their separators are about 3,600 characters: under Prefect's limit
# of 5,000 for a variable's value, with room for the keys.
PER_VARIABLE = 100
# A source's own record written this long after an intents variable was created replaces what that
# variable says of it (the two times are both the Prefect server's; the margin covers several server
# processes whose clocks differ a little).
CLOCK_SKEW = timedelta(seconds=5)
# An intents variable older than this, left by a writer that did not finish, is deleted by
# `prune_settled` once every source it names was written since.
STALE_AFTER = timedelta(hours=1)


def _key(start: StartRecord) -> str:
    return f"{start.pipeline}:{start.attempt}"


@dataclass
class Intents:
    """One intents variable's value: when, and which (pipeline, attempt) each named source intends."""

    requested_at: datetime
    starts: dict[str, list[str]] = field(default_factory=dict)  # "pipeline:attempt" -> digests

    def to_value(self) -> dict[str, object]:
        return {"requested_at": self.requested_at.isoformat(), "starts": self.starts}

    @classmethod
    def of(cls, variable: Variable) -> "Intents | None":
        """The intents a variable holds; None for a value this version does not understand."""
        value = variable.value
        if not isinstance(value, dict):
            return None
        try:
            starts = {str(k): [str(d) for d in v] for k, v in dict(value["starts"]).items()}
            return cls(requested_at=datetime.fromisoformat(str(value["requested_at"])), starts=starts)
        except (KeyError, TypeError, ValueError):
            return None

    def digests(self) -> set[str]:
        return {d for digests in self.starts.values() for d in digests}

    def without(self, digest: str) -> "Intents":
        starts = {k: [d for d in v if d != digest] for k, v in self.starts.items()}
        return Intents(self.requested_at, {k: v for k, v in starts.items() if v})

    def records_of(self, digest: str) -> list[StartRecord]:
        found = []
        for key, digests in self.starts.items():
            if digest in digests:
                pipeline, _, attempt = key.rpartition(":")
                start = StartRecord(pipeline=pipeline, attempt=int(attempt), requested_at=self.requested_at)
                found.append(start)
        return found


def merged(
    runs: SourceRuns, written: datetime | None, digest: str, variables: Iterable[Variable]
) -> tuple[SourceRuns, list[str]]:
    """The source's records with the intents of `variables` that still count for it, and the names of
    the variables they came from. `written`: when the source's own record was last written (None: never)."""
    named_by = []
    for variable in variables:
        if written is not None and variable.created is not None and written > variable.created + CLOCK_SKEW:
            continue  # the source's holder wrote its record since: that record is the final word
        intents = Intents.of(variable)
        added = False
        for start in intents.records_of(digest) if intents is not None else []:
            if runs.find(start.pipeline, start.attempt) is None:
                runs = SourceRuns(starts=[*runs.starts, start])
                added = True
        if added:
            named_by.append(variable.name)
    return runs, named_by


class FreshListing:
    """The intents variables, read so that every caller gets a listing begun after it asked.

    Callers that ask while a listing is on its way share the next one: a batch of a hundred sources,
    held together, reads them with one or two calls instead of a hundred, and none of them can miss
    intents written before it asked (another holder's intents were written before that holder let go
    of the source, so before this caller could hold it)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[list[Variable]] | None = None

    async def read(self) -> list[Variable]:
        task = self._task
        if task is not None and not task.done():
            # Begun before this call: wait for it to end, then share the one begun after it.
            await asyncio.wait([task])
            later = self._task
            if later is not None and later is not task:
                return await asyncio.shield(later)
        self._task = fresh = asyncio.create_task(read_variables_tagged(TAG))
        return await asyncio.shield(fresh)


@dataclass
class _Written:
    """An intents variable this process wrote, and the sources that have not written their own record."""

    intents: Intents
    pending: set[str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class IntentWriter:
    """Gathers the intents of one process's sources into shared variables, and deletes each once its
    sources have written their own records."""

    def __init__(self) -> None:
        self._gathered = Gathered(self._create, window=GATHER_SECONDS, size=PER_VARIABLE)
        self._written: dict[str, _Written] = {}

    async def intend(self, digest: str, start: StartRecord) -> None:
        await self._gathered.ask((digest, start))

    async def _create(self, batch: list[tuple[str, StartRecord]]) -> list[None]:
        # The earliest of the gathered times: a resume looks for runs created since, so earlier is safe.
        intents = Intents(requested_at=min(start.requested_at for _, start in batch))
        for digest, start in batch:
            intents.starts.setdefault(_key(start), []).append(digest)
        name = f"{PREFIX}{uuid.uuid4().hex}"
        create = VariableCreate(name=name, value=intents.to_value(), tags=[TAG])
        await prefect_call(lambda client: client.create_variable(create))
        self._written[name] = _Written(intents, intents.digests())
        return [None] * len(batch)

    async def written(self, digest: str, runs: SourceRuns) -> None:
        """The source wrote `runs` as its own record: its entries here are settled. An entry `runs` no
        longer has was withdrawn (its start was refused) and is taken out of the variable too, since a
        record written within `CLOCK_SKEW` of it does not yet outweigh it; a variable whose every source
        wrote is deleted."""
        for name, written in list(self._written.items()):
            if digest in written.pending:
                await self._settle(name, written, digest, runs)

    async def _settle(self, name: str, written: "_Written", digest: str, runs: SourceRuns) -> None:
        # The source's own record is written, which is what counts: a variable that could not be updated
        # or deleted now is left to `prune_settled`.
        async with written.lock:
            written.pending.discard(digest)
            if not written.pending:
                del self._written[name]
                with contextlib.suppress(Exception):
                    await _delete(name)
                return
            intended = written.intents.records_of(digest)
            if any(runs.find(s.pipeline, s.attempt) is None for s in intended):
                written.intents = written.intents.without(digest)
                update = VariableUpdate(name=name, value=written.intents.to_value(), tags=[TAG])
                with contextlib.suppress(Exception):
                    await prefect_call(lambda client: client.update_variable(update))


async def _delete(name: str) -> None:
    await prefect_call(lambda client: client.delete_variable_by_name(name))


async def prune_settled(records_tag: str, records_prefix: str, now: datetime) -> int:
    """Delete the intents variables left by writers that did not finish (older than `STALE_AFTER`) whose
    every source has written its own record since. Returns how many were deleted."""
    stale = [
        v for v in await read_variables_tagged(TAG) if v.created is not None and v.created < now - STALE_AFTER
    ]
    if not stale:
        return 0
    written = {v.name: v.updated for v in await read_variables_tagged(records_tag)}
    deleted = 0
    for variable in stale:
        intents = Intents.of(variable)
        if intents is None or variable.created is None:
            continue  # a value this version does not understand is left as it is
        since = [written.get(f"{records_prefix}{digest}") for digest in intents.digests()]
        if all(t is not None and t > variable.created + CLOCK_SKEW for t in since):
            await _delete(variable.name)
            deleted += 1
    return deleted
