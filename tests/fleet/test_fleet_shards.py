"""Sharding a fleet: which shard a source belongs to, the child runs' identity, and a 503 seen by one
shard pausing the others (tests/e2e_stack/test_stack_sharded_fleet.py runs the shards on workers)."""

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.seed import bench_spec, connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from splendor_flows.engine.polling import PollOptions
from splendor_flows.fleet.run import FleetOptions, FleetSummary, shard_of
from splendor_flows.fleet.shards import child_parameters, idempotency_key
from splendor_flows.flows.sync_fleet import sync_fleet
from splendor_flows.orchestration.runtime import use_runtime
from splendor_flows.orchestration.shared_pause import SharedPause
from tests.fleet.conftest import RecordingTransport

REFRESH = "POST /v1/admin/airbyte-runs/{run_id}/refresh"


def test_a_source_always_lands_in_the_same_shard_and_shards_are_balanced() -> None:
    # Fixed values: a change of the hash would move every source to another shard, and so to another
    # sync_id, and a re-run would sync them all again instead of resuming.
    assert [shard_of(f"src-{i}", 4) for i in range(8)] == [shard_of(f"src-{i}", 4) for i in range(8)]
    assert shard_of("stripe-demo", 2) == 0 and shard_of("hubspot-crm", 2) == 1
    assert shard_of("stripe-demo", 1) == 0
    counts = [0, 0, 0, 0]
    for i in range(2000):
        counts[shard_of(f"fleet-{i:04d}", 4)] += 1
    assert all(400 <= c <= 600 for c in counts), counts


def test_child_runs_are_identified_by_tenant_sync_id_shard_and_every_parameter() -> None:
    options = FleetOptions(connectors_file="deployments/connectors.yaml", shards=3)
    key = idempotency_key(options, "acme", "sync-1", 0)
    assert key == idempotency_key(options.model_copy(), "acme", "sync-1", 0)
    changed: list[dict[str, object]] = [
        {"only": ["stripe-*"]},
        {"shards": 4},
        {"trigger": "manual"},
        {"max_sync_attempts": 5},
        {"wait_for_ingest": True},
        {"poll": PollOptions(cap_seconds=5)},
        {"max_concurrency": 7},
    ]
    others = {
        idempotency_key(options, "acme", "sync-1", 1),
        idempotency_key(options, "acme", "sync-2", 0),
        idempotency_key(options, "globex", "sync-1", 0),
        *(idempotency_key(options.model_copy(update=c), "acme", "sync-1", 0) for c in changed),
    }
    # A re-run with another parameter is another child run, which runs with the new value.
    assert key not in others and len(others) == 3 + len(changed)
    child = child_parameters(options, "sync-1", 2)
    # The child keeps the fleet's sync_id: a source's state never depends on the shard layout.
    assert child["shard"] == 2 and child["shards"] == 3 and child["sync_id"] == "sync-1"
    # The child's parameters are the flow's own: the child deployment accepts them as they are.
    assert FleetOptions.model_validate(child).shard == 2
    with pytest.raises(ValidationError, match="shard 3 is out of range"):
        FleetOptions(connectors_file="x", shards=3, shard=3)


async def test_a_pause_published_by_one_shard_closes_the_others_gate() -> None:
    first = SharedPause("http://splendor.test", "pause-unit", "shard 0", 4)
    second = SharedPause("http://splendor.test", "pause-unit", "shard 1", 4)
    # What the client does on a 503 with Retry-After. Long, so that it still runs when the other shard
    # reads it however slow the round trips through the test server are on a busy machine (nothing here
    # waits on the gates).
    pause = 30.0
    began = time.monotonic()
    async with first.running():
        first.gate.close_for(pause)
        await asyncio.sleep(0.5)  # the write to the Prefect API
    assert first.published == 1
    await second.watch_once()
    elapsed = time.monotonic() - began
    # The other shard closes until the same moment: what is left of the pause, not a fresh one.
    assert pause - elapsed - 0.05 <= second.gate.closed_for() <= pause - 0.5
    # Applying someone else's pause does not publish it again.
    assert second.published == 0
    # Another tenant's shards are not paused.
    other = SharedPause("http://splendor.test", "pause-unit-other", "shard 0", 4)
    await other.watch_once()
    assert other.gate.closed_for() == 0


async def test_a_503_seen_by_one_shard_pauses_the_other_shard(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    # Two sources per shard, with runs long enough (Airbyte retrying attempts) that both shards poll
    # every 0.3 s when the 503 comes.
    keys: dict[int, list[str]] = {0: [], 1: []}
    i = 0
    while min(len(v) for v in keys.values()) < 2:
        key = f"{source_key}-{i:02d}"
        if len(keys[shard_of(key, 2)]) < 2:
            keys[shard_of(key, 2)].append(key)
        i += 1
    specs = [bench_spec(0, source_key=k) for k in keys[0] + keys[1]]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml(specs))
    for spec in specs:
        emulator.add_fault(kind="run_incomplete", source_key=spec.source_key, times=10, count=1)
    poll = PollOptions(initial_seconds=0.2, cap_seconds=0.3)
    recorders = {0: RecordingTransport(), 1: RecordingTransport()}

    async def shard(index: int) -> FleetSummary:
        with use_runtime(transport=recorders[index]):
            return await sync_fleet(
                connectors_file=str(path),
                shards=2,
                shard=index,
                sync_id=source_key,
                poll=poll,
                concurrency_limit=None,
            )

    both = asyncio.gather(shard(0), shard(1))
    deadline = time.monotonic() + 60
    while not all(any("/refresh" in e[2] for e in r.log) for r in recorders.values()):
        assert time.monotonic() < deadline, "the shards never started polling"
        await asyncio.sleep(0.1)
    emulator.add_fault(kind="unavailable", route=REFRESH, count=1, retry_after="3")
    summaries = await both

    assert all(s.failed == 0 for s in summaries)
    [(seen_by, answered)] = [(i, e[1]) for i, r in recorders.items() for e in r.log if e[3] == 503]
    other = recorders[1 - seen_by].log
    # The other shard learns of the pause within a watch interval (1 s) and then holds back until the
    # end the server named; before it learned, and after the pause, it kept polling.
    assert [e for e in other if answered + 1.6 < e[0] < answered + 2.8] == []
    assert any(e[0] > answered + 3.0 for e in other)


async def test_each_shard_takes_its_share_of_the_tenants_limit(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from splendor_flows.fleet.run import DEFAULT_CONCURRENCY_LIMIT, limit_name

    assert limit_name(DEFAULT_CONCURRENCY_LIMIT, "acme") == "splendor-api-acme"
    specs = [bench_spec(i, source_key=f"{source_key}-{i:02d}") for i in range(4)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml(specs))
    name = f"splendor-api-{source_key}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=5))
    summaries = await asyncio.gather(
        *(
            sync_fleet(
                connectors_file=str(path),
                shards=2,
                shard=s,
                sync_id=f"{source_key}-{s}",
                concurrency_limit=name,
            )
            for s in range(2)
        )
    )
    # 5 // 2: both shards ran at once, and together they held no more than the limit.
    assert [s.api_slots for s in summaries] == [2, 2]
    assert sum(s.sources for s in summaries) == 4 and all(s.failed == 0 for s in summaries)


def test_sources_with_the_longest_expected_syncs_start_first(tmp_path: Path) -> None:
    from splendor_flows.engine.history import RunHistory
    from splendor_flows.fleet.run import longest_first

    history = RunHistory(tmp_path / "history.json")
    for key, seconds in {"short": 1.0, "long": 20.0, "middle": 8.0}.items():
        history.record("acme", key, seconds)
    # Sources without history might be long too: they go first, in their order.
    assert longest_first(history, "acme", ["short", "new-a", "middle", "long", "new-b"]) == [
        "new-a",
        "new-b",
        "long",
        "middle",
        "short",
    ]
    # Another tenant's history says nothing of this one's sources.
    assert longest_first(history, "globex", ["short", "long"]) == ["short", "long"]
