"""One pipeline per source at a time, on a real Prefect server (the test harness) and the emulator.

- Two entry points on one source at once (two manual syncs with their own sync_ids): the second waits
  for the first to finish with the source, so their Splendor runs never overlap, and while both race
  no start record is ever lost (each start's record is read back many times a second while the
  starts are slowed down: a record that appears and then vanishes is a lost write).
- `force` starts a new sync after a finished one.

A dead holder's release needs the server's repossessor service, which the test harness's server does not
run: tests/e2e/test_e2e_6_source_lock.py proves it on a real `prefect server start`.
"""

import asyncio
import uuid
from datetime import datetime

import pytest

from splendor_emulator import Emulator
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.run_records import SourceRuns, pipeline_of
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.sync_source import sync_source
from splendor_flows.orchestration import source_lock
from splendor_flows.orchestration.run_records import PrefectRunRecords
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.source_lock import (
    BatchHolds,
    SourceBusy,
    ensure_source_limits,
    hold_source,
    limit_name,
)
from tests.flows.conftest import stripe_spec

FAST_POLL = PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=30)
START = "POST /v1/admin/airbyte-sources/{source_id}/sync"


def _scope(emulator: Emulator, source_key: str, sync_id: str) -> Scope:
    return Scope(api_base=emulator.base_url, tenant="acme", source_key=source_key, sync_id=sync_id)


def _intervals(emulator: Emulator, source_id: int) -> list[tuple[datetime, datetime]]:
    runs = emulator.runs("acme", source_id=source_id)
    return sorted(
        (datetime.fromisoformat(r["created_at"]), datetime.fromisoformat(r["completed_at"])) for r in runs
    )


async def test_two_pipelines_on_one_source_take_turns_and_lose_no_start_record(
    emulator: Emulator, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await connect_source(spec=stripe_spec(source_key), sync=False)
    [source] = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    first, second = f"first-{uuid.uuid4().hex[:6]}", f"second-{uuid.uuid4().hex[:6]}"
    scope = _scope(emulator, source_key, first)
    # A slow record store and slow starts: without the exclusion both pipelines read the records before
    # either writes them back (the second write drops the first's intent), and the second start lands
    # while the first run is in flight.
    read = PrefectRunRecords.read

    async def slow_read(self: PrefectRunRecords, scope: ScopeLike) -> SourceRuns:
        runs = await read(self, scope)
        await asyncio.sleep(0.5)
        return runs

    monkeypatch.setattr(PrefectRunRecords, "read", slow_read)
    emulator.add_fault(kind="latency", route=START, seconds=1.0)
    seen: dict[str, bool] = {pipeline_of(_scope(emulator, source_key, s)): False for s in (first, second)}
    lost: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:
        # Reads the records as they are (not through the slowed read) many times a second.
        while not stop.is_set():
            held = {s.pipeline for s in (await read(PrefectRunRecords(), scope)).starts}
            for pipeline in seen:
                if pipeline in held:
                    seen[pipeline] = True
                elif seen[pipeline]:
                    lost.append(pipeline)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        summaries = await asyncio.gather(
            *(
                sync_source(source_key=source_key, sync_id=s, trigger="manual", poll=FAST_POLL)
                for s in (first, second)
            )
        )
    finally:
        stop.set()
        await watcher
    assert not lost, f"a start record vanished after it was written: {lost}"
    assert all(seen.values()), seen
    assert all(s.status == "succeeded" and s.ingest_status == "ready" for s in summaries)
    # Each pipeline synced once, one after the other: never a start sent while the other's run was in
    # flight (Splendor would have answered 409 sync_in_progress), never two runs of the source at once.
    starts = [
        m["status"]
        for m in emulator.mutations()
        if m["route"].endswith("/sync") and str(m["path_params"].get("source_id")) == str(source["source_id"])
    ]
    assert starts == [200, 200], starts
    assert len({s.run_id for s in summaries}) == 2
    [(_, first_done), (second_began, _)] = _intervals(emulator, source["source_id"])
    assert second_began >= first_done, "the second pipeline started while the first run was in flight"
    final = {s.pipeline for s in (await read(PrefectRunRecords(), scope)).starts if s.run_id is not None}
    assert set(seen) <= final


async def test_force_starts_a_new_sync_after_a_finished_one(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    sync_id = f"forced-{uuid.uuid4().hex[:6]}"
    done = await connect_source(spec=stripe_spec(source_key), sync_id=sync_id, poll=FAST_POLL)
    assert done.status == "succeeded"
    again = await sync_source(source_key=source_key, sync_id=sync_id, poll=FAST_POLL, trigger="manual")
    assert again.run_id == done.run_id, "without force the same sync_id attaches to its run"
    forced = await sync_source(
        source_key=source_key, sync_id=sync_id, force=True, poll=FAST_POLL, trigger="manual"
    )
    assert forced.status == "succeeded" and forced.run_id != done.run_id
    assert forced.sync_id.startswith(f"{sync_id}.force-")
    runs = emulator.runs("acme", source_id=done.source_id)
    assert sorted(r["run_id"] for r in runs) == sorted([done.run_id, forced.run_id])
    # The forced pipeline resumes under its own sync_id: no third run.
    resumed = await sync_source(
        source_key=source_key, sync_id=forced.sync_id, poll=FAST_POLL, trigger="manual"
    )
    assert resumed.run_id == forced.run_id


async def test_a_batch_is_released_when_its_sources_are_done_even_one_cancelled_while_waiting(
    emulator: Emulator, source_key: str
) -> None:
    scopes = [_scope(emulator, f"{source_key}-{i}", "batch") for i in range(3)]
    # Every limit exists first (a batch with a source never held falls back to one hold per source).
    for scope in scopes:
        async with hold_source(scope, wait_seconds=5):
            pass
    holds = BatchHolds(wait_seconds=5)
    inside = asyncio.Event()

    async def member(scope: Scope) -> None:
        async with holds.hold(scope):
            inside.set()
            # Long enough for the other hold below to be answered while the batch still holds, on a
            # machine loaded by the parallel suite (0.5 s was not once).
            await asyncio.sleep(3)

    tasks = [asyncio.create_task(member(scope)) for scope in scopes]
    await asyncio.sleep(0)
    tasks[2].cancel()  # cancelled while the batch is still being gathered
    await inside.wait()
    # Held by the batch: another pipeline does not get the sources meanwhile.
    try:
        async with hold_source(scopes[0], wait_seconds=0.1):
            raise AssertionError("a source of a held batch was held twice")
    except SourceBusy:
        pass
    await asyncio.gather(*tasks, return_exceptions=True)
    # All three released once the two that ran were done: the cancelled one does not keep the lease alive.
    for scope in scopes:
        async with hold_source(scope, wait_seconds=3) as waited:
            assert waited < 3


async def _existing_limits(names: list[str]) -> set[str]:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    found: set[str] = set()
    async with get_client() as client:
        for name in names:
            try:
                await client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                continue
            found.add(name)
    return found


async def _hold_as_one_batch(holds: BatchHolds, scopes: list[Scope]) -> None:
    async def member(scope: Scope) -> None:
        async with holds.hold(scope):
            await asyncio.sleep(0.05)

    await asyncio.gather(*(member(scope) for scope in scopes))


async def test_a_first_batch_of_new_sources_creates_the_limits_of_every_source_announced(
    emulator: Emulator, source_key: str
) -> None:
    """A tenant's first fleet: its first batch finds no limit, and creates those of the whole fleet at
    once instead of leaving each later batch to ask, create and ask again."""
    scopes = [_scope(emulator, f"{source_key}-{i}", "first-fleet") for i in range(60)]
    holds = BatchHolds(wait_seconds=5, sources=scopes)
    await _hold_as_one_batch(holds, scopes[:25])
    names = [limit_name(scope) for scope in scopes]
    assert await _existing_limits(names) == set(names)


async def test_a_batch_of_mostly_known_sources_creates_only_its_own_missing_limits(
    emulator: Emulator, source_key: str
) -> None:
    """The steady state: a few new sources among known ones create their own limits, not the fleet's."""
    scopes = [_scope(emulator, f"{source_key}-{i}", "later-fleet") for i in range(40)]
    for scope in scopes[:20]:
        async with hold_source(scope, wait_seconds=5):
            pass
    holds = BatchHolds(wait_seconds=5, sources=scopes)
    await _hold_as_one_batch(holds, scopes[:25])
    names = [limit_name(scope) for scope in scopes]
    assert await _existing_limits(names) == set(names[:25])


async def test_onboarding_creates_the_missing_limits_once_and_a_connect_leaves_its_source_with_one(
    emulator: Emulator, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `apply` and `connect` do so that a source's first sync need not create its limit: many
    sources are looked up in one listing (paged) and only the missing ones created; a few are created
    outright, an existing one answering 409."""
    scopes = [_scope(emulator, f"{source_key}-{i:03d}", "apply") for i in range(230)]
    names = [limit_name(scope) for scope in scopes]
    for scope in scopes[:30]:
        async with hold_source(scope, wait_seconds=5):
            pass
    create = source_lock._create_limit
    asked: list[str] = []

    async def counted(name: str) -> bool:
        asked.append(name)
        return await create(name)

    monkeypatch.setattr(source_lock, "_create_limit", counted)
    assert await ensure_source_limits(scopes) == 200
    # The listing (more than one page of limits) found the 30 that exist: no call was spent on them.
    assert sorted(asked) == sorted(names[30:])
    assert await _existing_limits(names) == set(names)
    asked.clear()
    assert await ensure_source_limits(scopes) == 0 and asked == []
    assert await ensure_source_limits(scopes[:3]) == 0  # asked for outright: three 409s
    assert await _existing_limits(names) == set(names)

    await connect_source(spec=stripe_spec(source_key), sync=False)
    connected = limit_name(_scope(emulator, source_key, "any"))
    assert await _existing_limits([connected]) == {connected}


async def test_a_batch_with_a_source_held_elsewhere_is_split_not_taken_apart(
    emulator: Emulator, source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of 40 sources is held by another pipeline: the batch is asked for again in halves, so the
    other 39 get in with a few leases instead of 39 holds of their own, and the held one waits."""
    from splendor_flows.orchestration import source_lock

    scopes = [_scope(emulator, f"{source_key}-{i}", "split") for i in range(40)]
    for scope in scopes:  # every limit exists: the count below is of asks only
        async with hold_source(scope, wait_seconds=5):
            pass
    asks: list[list[str]] = []
    increment = source_lock._increment

    async def counted(names: list[str]) -> tuple[uuid.UUID, set[str]] | int:
        asks.append(names)
        return await increment(names)

    monkeypatch.setattr(source_lock, "_increment", counted)
    busy = scopes[17]
    inside: set[str] = set()
    everyone_else_inside = asyncio.Event()

    async def member(scope: Scope) -> None:
        async with holds.hold(scope):
            inside.add(scope.source_key)
            if len(inside) == len(scopes) - 1:
                everyone_else_inside.set()
            await everyone_else_inside.wait()

    holds = BatchHolds(wait_seconds=30)
    async with hold_source(busy, wait_seconds=5):
        asks.clear()
        tasks = [asyncio.create_task(member(scope)) for scope in scopes]
        await asyncio.wait_for(everyone_else_inside.wait(), timeout=20)
        assert busy.source_key not in inside
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert busy.source_key in inside
    # 40 → 20 + 20 → 10 + 10 → 5 + 5 → 2 + 3, then the 2 or 3 sources of the last half on their own (the
    # held one asking again until it is free).
    batch_sizes = [len(names) for names in asks if len(names) > 1]
    on_their_own = {names[0] for names in asks if len(names) == 1}
    assert batch_sizes[0] == 40 and len(batch_sizes) <= 9, batch_sizes
    assert limit_name(busy) in on_their_own and len(on_their_own) <= 3, len(on_their_own)
