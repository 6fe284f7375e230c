"""A schedule tick (the sync-scheduled flow that a schedule group starts) syncs every source its group
lists, with a Splendor run of its own per source and tick, each handed to ingestion once, each from the
moment it is due within the tick's window."""

from collections import Counter
from datetime import UTC, datetime

import pytest

from bench.seed import bench_spec, onboard
from splendor_api import ConfigError, SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from splendor_flows.flows.sync_scheduled import sync_scheduled

SYNC = "POST /v1/admin/airbyte-sources/{source_id}/sync"


async def test_each_tick_syncs_every_source_of_its_group_once(emulator: Emulator, source_key: str) -> None:
    specs = [bench_spec(i, source_key=f"{source_key}-{i}") for i in range(3)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    keys = [spec.source_key for spec in specs]
    ids = {s["source_id"]: s["source_key"] for s in emulator.sources("acme") if s["source_key"] in keys}

    for tick in (1, 2):
        emulator.reset_counters()
        summary = await sync_scheduled(source_keys=keys, concurrency_limit=None)
        assert summary.failed == 0, summary
        assert sorted(o.source_key for o in summary.outcomes) == sorted(keys)
        assert emulator.count(SYNC) == len(keys)
        runs = [r for r in emulator.runs("acme") if r["source_id"] in ids]
        assert Counter(ids[r["source_id"]] for r in runs) == dict.fromkeys(keys, tick)
        assert all(r["status"] == "succeeded" for r in runs)
        # Every run of the group handed to ingestion once: one ingest run per Splendor run.
        handed = Counter(i["connector_run_id"] for i in emulator.ingest_runs("acme") if i["connector_run_id"])
        assert {r["run_id"]: handed[r["run_id"]] for r in runs} == {r["run_id"]: 1 for r in runs}


async def test_a_tick_starts_each_source_when_it_is_due_within_its_window(
    emulator: Emulator, source_key: str
) -> None:
    """A window's tick syncs the sources due later in the window from its one process: each run starts
    no earlier than the tick's scheduled time plus the source's place in the window, and one summary
    covers them all."""
    specs = [bench_spec(i, source_key=f"{source_key}-{i}") for i in range(3)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    keys = [spec.source_key for spec in specs]
    ids = {s["source_id"]: s["source_key"] for s in emulator.sources("acme") if s["source_key"] in keys}
    later = {keys[1]: 4, keys[2]: 4}

    # The tick's scheduled time is when its flow run is created: after this.
    before = datetime.now(UTC).timestamp()
    summary = await sync_scheduled(source_keys=keys, start_after_seconds=later, concurrency_limit=None)
    assert summary.failed == 0, summary
    assert sorted(o.source_key for o in summary.outcomes) == sorted(keys)
    created = {
        ids[r["source_id"]]: datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")).timestamp()
        for r in emulator.runs("acme")
        if r["source_id"] in ids
    }
    assert sorted(created) == sorted(keys), "one run per source"
    for key, after in later.items():
        assert created[key] >= before + after, (key, created[key] - before)
    handed = Counter(i["connector_run_id"] for i in emulator.ingest_runs("acme") if i["connector_run_id"])
    assert sorted(handed[r["run_id"]] for r in emulator.runs("acme") if r["source_id"] in ids) == [1, 1, 1]


async def test_what_stops_one_wave_stops_the_tick_as_itself(emulator: Emulator, source_key: str) -> None:
    """A tick of several waves that cannot run (its credentials block is missing) fails with the error
    the CLI and the failure masking know, not an exception group, and starts no sync."""
    keys = [f"{source_key}-0", f"{source_key}-1"]
    emulator.reset_counters()
    with pytest.raises(ConfigError, match="no-such-block"):
        await sync_scheduled(
            source_keys=keys,
            start_after_seconds={keys[1]: 1},
            credentials_block="no-such-block",
            concurrency_limit=None,
        )
    assert emulator.count(SYNC) == 0
