"""A holder's view of its source's records: one read of the store per hold, and the same records written
as without it (a resume elsewhere reads exactly what a direct write would have left)."""

import pytest

from splendor_flows.engine.run_records import (
    HeldRecords,
    MemoryRunRecords,
    RunRecords,
    SourceRuns,
    StartRecord,
)
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.engine.sync import start_or_attach
from tests.engine.fakes import LOST, harness


class CountingRecords:
    def __init__(self) -> None:
        self.inner = MemoryRunRecords()
        self.reads = 0
        self.fail_writes = 0

    async def read(self, scope: ScopeLike) -> SourceRuns:
        self.reads += 1
        return await self.inner.read(scope)

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise OSError("store unreachable")
        await self.inner.write(scope, runs)

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        await self.write(scope, runs.with_start(start))

    def forget_hint(self, scope: ScopeLike) -> str:
        return self.inner.forget_hint(scope)


async def _start(records: RunRecords, **failures: object) -> int:
    h = harness(run_records=records, **failures)
    started, _ = await start_or_attach(h.ctx, 12, 1, "manual")
    return started.run_id


async def test_a_start_reads_the_store_once_and_leaves_the_same_records() -> None:
    direct, held = CountingRecords(), CountingRecords()
    direct_run = await _start(direct)
    held_run = await _start(HeldRecords(held))
    # Without the holder's view: a read before the intent and one before the run-id write.
    assert direct.reads == 2 and held.reads == 1
    scope = harness().ctx.scope
    [direct_start] = (await direct.inner.read(scope)).starts
    [held_start] = (await held.inner.read(scope)).starts
    assert (held_start.attempt, held_start.run_id) == (direct_start.attempt, direct_start.run_id)
    assert held_run == held_start.run_id and direct_run == direct_start.run_id


async def test_a_lost_start_answer_reads_from_the_holders_view_too() -> None:
    held = CountingRecords()
    await _start(HeldRecords(held), failures={"start_sync": [LOST]})
    [start] = (await held.inner.read(harness().ctx.scope)).starts
    assert start.run_id is not None and held.reads == 1


async def test_after_a_failed_write_the_next_read_asks_the_store() -> None:
    store = CountingRecords()
    records = HeldRecords(store)
    scope = harness().ctx.scope
    await records.read(scope)
    store.fail_writes = 1
    with pytest.raises(OSError):
        await records.write(scope, SourceRuns())
    await records.read(scope)
    assert store.reads == 2
