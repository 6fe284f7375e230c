"""The intents of many sources in shared Prefect Variables (orchestration.intent_variables): one write for a
batch, read back by any other worker as each source's intent, settled by the sources' own records."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client

import splendor_flows.orchestration.intent_variables as intent_variables
from bench.seed import bench_spec, connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from splendor_flows.engine.run_records import SourceRuns, StartRecord, pipeline_of, source_digest
from splendor_flows.flows.sync_fleet import sync_fleet
from splendor_flows.orchestration.gathered import Gathered
from splendor_flows.orchestration.intent_variables import TAG, FreshListing
from splendor_flows.orchestration.prefect_compat import read_variables_tagged
from splendor_flows.orchestration.run_records import PrefectRunRecords, variable_name
from splendor_flows.orchestration.scope import Scope
from tests.flows.conftest import MUTATING
from tests.flows.test_state_across_workers import Worker


def _scopes(prefix: str, count: int) -> list[Scope]:
    sync_id = str(uuid.uuid4())
    return [
        Scope(api_base="http://splendor.test", tenant="acme", source_key=f"{prefix}-{i}", sync_id=sync_id)
        for i in range(count)
    ]


def _intent(scope: Scope, attempt: int = 1) -> StartRecord:
    return StartRecord(pipeline=pipeline_of(scope), attempt=attempt, requested_at=datetime.now(UTC))


async def _naming(scopes: list[Scope]) -> list[str]:
    """The intents variables that name any of these sources."""
    digests = {source_digest(s) for s in scopes}
    return [
        v.name
        for v in await read_variables_tagged(TAG)
        if any(d in digests for ds in (v.value or {}).get("starts", {}).values() for d in ds)
    ]


async def _own_records(scopes: list[Scope]) -> list[str]:
    async with get_client() as client:
        found = [await client.read_variable_by_name(variable_name(s)) for s in scopes]
    return [v.name for v in found if v is not None]


async def test_the_intents_of_a_batch_are_one_variable_and_another_worker_reads_each(source_key: str) -> None:
    scopes = _scopes(source_key, 30)
    writer = PrefectRunRecords(gather_intents=True)
    before = datetime.now(UTC)
    await asyncio.gather(*(writer.intend(s, SourceRuns(), _intent(s)) for s in scopes))
    assert len(await _naming(scopes)) == 1
    assert await _own_records(scopes) == []  # no write per source before the starts
    elsewhere = PrefectRunRecords()
    for scope in scopes:
        [start] = (await elsewhere.read(scope)).starts
        assert (start.pipeline, start.attempt, start.run_id) == (pipeline_of(scope), 1, None)
        assert before <= start.requested_at <= datetime.now(UTC)


async def test_the_sources_records_settle_their_intents_and_the_shared_variable_goes(source_key: str) -> None:
    scopes = _scopes(source_key, 6)
    writer = PrefectRunRecords(gather_intents=True)
    intents = {s.source_key: _intent(s) for s in scopes}
    await asyncio.gather(*(writer.intend(s, SourceRuns(), intents[s.source_key]) for s in scopes))
    [name] = await _naming(scopes)
    for run_id, scope in enumerate(scopes[:-1], start=100):
        start = intents[scope.source_key].model_copy(update={"run_id": run_id})
        await writer.write(scope, SourceRuns().with_start(start))
    # One source has not written its own record yet (its writer may die now): the variable stays.
    assert await _naming(scopes) == [name]
    last = scopes[-1]
    assert (await PrefectRunRecords().read(last)).starts[0].run_id is None
    await writer.write(
        last, SourceRuns().with_start(intents[last.source_key].model_copy(update={"run_id": 7}))
    )
    assert await _naming(scopes) == []
    assert [s.run_id for s in (await PrefectRunRecords().read(last)).starts] == [7]


async def test_a_withdrawn_intent_is_not_read_back_while_its_batch_mates_still_are(source_key: str) -> None:
    refused, kept = _scopes(source_key, 2)
    writer = PrefectRunRecords(gather_intents=True)
    await asyncio.gather(*(writer.intend(s, SourceRuns(), _intent(s)) for s in (refused, kept)))
    # The start was refused: the engine writes the source's records without that intent.
    await writer.write(refused, SourceRuns())
    assert (await PrefectRunRecords().read(refused)).starts == []
    assert [s.run_id for s in (await PrefectRunRecords().read(kept)).starts] == [None]


async def test_a_record_written_later_outweighs_a_dead_writers_intents(
    source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an operator does when told to forget a lost start, and what a later holder's write does."""
    monkeypatch.setattr(intent_variables, "CLOCK_SKEW", timedelta(0))
    scope, other = _scopes(source_key, 2)
    dead = PrefectRunRecords(gather_intents=True)
    await asyncio.gather(*(dead.intend(s, SourceRuns(), _intent(s)) for s in (scope, other)))
    reader = PrefectRunRecords()
    assert [s.run_id for s in (await reader.read(scope)).starts] == [None]
    [shared] = await _naming([scope])
    assert shared in reader.forget_hint(scope) and variable_name(scope) in reader.forget_hint(scope)
    await asyncio.sleep(0.05)
    await PrefectRunRecords().write(scope, SourceRuns())
    assert (await reader.read(scope)).starts == []
    assert [s.run_id for s in (await reader.read(other)).starts] == [None]


async def test_a_dead_writers_variable_is_pruned_once_every_source_it_names_wrote_since(
    source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intent_variables, "CLOCK_SKEW", timedelta(0))
    monkeypatch.setattr(intent_variables, "STALE_AFTER", timedelta(0))
    settled, pending = _scopes(f"{source_key}-a", 2), _scopes(f"{source_key}-b", 2)
    for batch in (settled, pending):
        dead = PrefectRunRecords(gather_intents=True)
        await asyncio.gather(*(dead.intend(s, SourceRuns(), _intent(s)) for s in batch))
    await asyncio.sleep(0.05)
    later = PrefectRunRecords()
    for scope in [*settled, pending[0]]:
        await later.write(scope, (await later.read(scope)).with_start(_intent(scope, attempt=2)))
    await later.prune_settled()
    assert await _naming(settled) == []
    assert len(await _naming(pending)) == 1


async def test_a_listing_in_flight_when_asked_is_not_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller must see intents written before it asked: a listing begun earlier may have missed them."""
    begun: list[int] = []

    async def listing(tag: str) -> list[Any]:
        begun.append(len(begun))
        number = len(begun)
        await asyncio.sleep(0.05)
        return [number]

    monkeypatch.setattr(intent_variables, "read_variables_tagged", listing)
    fresh = FreshListing()
    first = asyncio.create_task(fresh.read())
    await asyncio.sleep(0.01)
    late = [asyncio.create_task(fresh.read()) for _ in range(50)]
    assert await first == [1]
    # Every later caller shares the one listing begun after the first ended.
    assert {tuple(await t) for t in late} == {(2,)}
    assert len(begun) == 2


async def test_asks_within_the_window_share_one_send_and_a_failure_reaches_each() -> None:
    sent: list[list[int]] = []

    async def send(keys: list[int]) -> list[int]:
        sent.append(keys)
        if 13 in keys:
            raise OSError("server unreachable")
        return [k * 2 for k in keys]

    gathered: Gathered[int, int] = Gathered(send, window=0.02, size=5)
    assert await asyncio.gather(*(gathered.ask(k) for k in range(7))) == [k * 2 for k in range(7)]
    assert sent == [[0, 1, 2, 3, 4], [5, 6]]
    results = await asyncio.gather(gathered.ask(12), gathered.ask(13), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)


async def test_a_fleet_whose_run_id_records_were_lost_is_resumed_elsewhere_without_a_second_sync(
    emulator: Emulator, tmp_path: Path, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet's intents are all another worker has: its checkpoints are on the fleet's machine, and the
    sources' own records never got their run ids (as when the fleet's worker dies after its starts)."""
    specs = [bench_spec(i, source_key=f"{source_key}-{i:02d}") for i in range(4)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml(specs))

    async def lost(self: PrefectRunRecords, scope: Any, runs: SourceRuns) -> None:
        raise ConnectionError("the fleet's worker is gone")

    write = PrefectRunRecords.write
    monkeypatch.setattr(PrefectRunRecords, "write", lost)
    summary = await sync_fleet(connectors_file=str(path), concurrency_limit=None)
    monkeypatch.setattr(PrefectRunRecords, "write", write)
    assert summary.succeeded == 4
    scopes = [
        Scope(api_base=emulator.base_url, tenant="acme", source_key=s.source_key, sync_id=summary.sync_id)
        for s in specs
    ]
    # Each source is named by an intents variable (usually one for the four; a loaded machine may spread
    # the batch over more than the gathering window, and so over two), and none has a record of its own.
    assert all([await _naming([scope]) for scope in scopes]) and await _own_records(scopes) == []

    emulator.reset_counters()
    worker = Worker.make(tmp_path, "elsewhere")
    resumed = await asyncio.to_thread(
        worker.run, "sync", specs[0].source_key, summary.sync_id, emulator.base_url
    )
    assert resumed["state"] == "COMPLETED", resumed
    assert emulator.count(MUTATING["sync"]) == 0
    assert resumed["summary"]["run_id"] == summary.outcomes[0].run_id
