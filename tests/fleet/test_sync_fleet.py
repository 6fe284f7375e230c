"""The fleet flow against the emulator: isolation of failures, resume, bounded concurrency, 503 pauses."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from bench.seed import bench_spec, connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from splendor_flows.fleet.run import FleetFailed
from splendor_flows.flows.sync_fleet import sync_fleet
from tests.fleet.conftest import RecordingTransport

REFRESH = "POST /v1/admin/airbyte-runs/{run_id}/refresh"
SYNC = "POST /v1/admin/airbyte-sources/{source_id}/sync"


async def _fleet_file(tmp_path: Path, prefix: str, count: int) -> Path:
    specs = [bench_spec(i, source_key=f"{prefix}-{i:02d}") for i in range(count)]
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, specs)
    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml(specs))
    return path


async def _artifact(key: str) -> object:
    async with get_client() as client:
        # Newest first: other fleet tests of the session publish under the same key.
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return found[0].data


async def test_one_failing_source_does_not_stop_the_others(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    path = await _fleet_file(tmp_path, source_key, 6)
    broken = f"{source_key}-03"
    emulator.add_fault(kind="run_fail", source_key=broken, error_message="connector exited with code 1")
    with pytest.raises(FleetFailed) as caught:
        await sync_fleet(connectors_file=str(path), max_sync_attempts=2, concurrency_limit=None)
    summary = caught.value.summary
    by_key = {o.source_key: o for o in summary.outcomes}
    assert summary.failed == 1 and summary.succeeded == 5
    assert by_key[broken].status == "failed" and by_key[broken].step == "poll"
    assert "2 sync attempt(s) failed" in (by_key[broken].error or "")
    assert all(o.ingest_run_ids for k, o in by_key.items() if k != broken)
    assert "1 of 6 source(s) failed" in str(caught.value)
    # A failed sync is the pipeline's verdict, not a glitch: the source was not tried again.
    assert not any("retried after" in w for w in by_key[broken].warnings)
    table = await _artifact("splendor-fleet-sources")
    assert broken in str(table) and "connector exited with code 1" in str(table)

    # Re-running with the same sync_id touches only the failed source.
    emulator.clear_faults()
    emulator.reset_counters()
    again = await sync_fleet(
        connectors_file=str(path), sync_id=summary.sync_id, max_sync_attempts=2, concurrency_limit=None
    )
    assert again.failed == 0
    assert emulator.counts().get(SYNC, 0) == 1
    assert all(o.resumed for o in again.outcomes)
    # The two failed attempts came back from checkpoints and did not count against the new budget.
    assert next(o for o in again.outcomes if o.source_key == broken).sync_attempts == 3


async def test_sync_source_picks_up_a_source_the_fleet_left_unfinished(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """The fleet's store and the per-step tasks key their checkpoints alike: either resumes the other."""
    from splendor_flows.flows.sync_source import sync_source

    path = await _fleet_file(tmp_path, source_key, 1)
    broken = f"{source_key}-00"
    emulator.add_fault(kind="run_fail", source_key=broken, count=1)
    with pytest.raises(FleetFailed) as caught:
        await sync_fleet(connectors_file=str(path), max_sync_attempts=1, concurrency_limit=None)
    emulator.reset_counters()
    summary = await sync_source(source_key=broken, sync_id=caught.value.summary.sync_id, max_sync_attempts=1)
    # The fleet's failed attempt came back from its checkpoints (not counted against the budget of 1);
    # the second attempt is the only start.
    assert summary.status == "succeeded" and summary.sync_attempts == 2
    assert emulator.counts().get(SYNC, 0) == 1


async def test_a_source_failing_on_a_transient_error_is_tried_once_more(
    emulator: Emulator, tmp_path: Path, source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process retry of a fleet source: what `retries=1` with `retry_only_transient` gives a step
    task. The Prefect API drops the connection while the first start is being recorded (before the
    start is sent); the fleet tries the source again, which records, starts and ingests it once."""
    import httpx

    import splendor_flows.fleet.source as fleet_source
    from splendor_flows.orchestration.run_records import PrefectRunRecords

    path = await _fleet_file(tmp_path, source_key, 1)
    monkeypatch.setattr(fleet_source, "SOURCE_RETRY_DELAYS_SECONDS", (0.2, 0.2))
    intend = PrefectRunRecords.intend
    failures = [httpx.ConnectError("connection reset by the Prefect API")]

    async def flaky_intend(self: PrefectRunRecords, *args: Any) -> None:
        if failures:
            raise failures.pop()
        await intend(self, *args)

    monkeypatch.setattr(PrefectRunRecords, "intend", flaky_intend)
    emulator.reset_counters()
    summary = await sync_fleet(connectors_file=str(path), concurrency_limit=None)
    [outcome] = summary.outcomes
    assert outcome.status == "succeeded" and outcome.ingest_run_ids
    assert emulator.counts().get(SYNC, 0) == 1
    assert any("retried after" in w and "connection reset" in w for w in outcome.warnings)


async def test_api_concurrency_is_bounded(
    emulator: Emulator, tmp_path: Path, source_key: str, recorder: RecordingTransport
) -> None:
    path = await _fleet_file(tmp_path, source_key, 12)
    # Slow enough that the sources' requests pile up behind the bound even while each source takes its
    # per-source slot from the Prefect server first.
    emulator.add_fault(kind="latency", route="*", seconds=0.3)
    summary = await sync_fleet(connectors_file=str(path), max_concurrency=3, concurrency_limit=None)
    assert summary.succeeded == 12
    assert recorder.peak == 3


async def test_a_503_pauses_the_whole_fleet(
    emulator: Emulator, tmp_path: Path, source_key: str, recorder: RecordingTransport
) -> None:
    path = await _fleet_file(tmp_path, source_key, 8)
    emulator.add_fault(kind="unavailable", route=REFRESH, count=1, retry_after="2")
    summary = await sync_fleet(connectors_file=str(path), concurrency_limit=None)
    assert summary.failed == 0
    shed = [entry for entry in recorder.log if entry[3] == 503]
    assert len(shed) == 1
    answered = shed[0][1]
    # Nothing else left while the gate was closed. The margins allow for scheduling lag at the edges:
    # a request let through just before the 503 was read can reach the transport late on a busy machine.
    during = [e for e in recorder.log if answered + 0.5 < e[0] < answered + 1.9]
    assert during == []


async def test_a_global_concurrency_limit_caps_the_fleet(
    emulator: Emulator, tmp_path: Path, source_key: str, recorder: RecordingTransport
) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    path = await _fleet_file(tmp_path, source_key, 6)
    name = f"splendor-api-{source_key}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=2))
    emulator.add_fault(kind="latency", route="*", seconds=0.1)
    summary = await sync_fleet(connectors_file=str(path), max_concurrency=10, concurrency_limit=name)
    assert summary.api_slots == 2 and summary.succeeded == 6
    assert recorder.peak <= 2
    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(name)
    assert limit.active_slots == 0  # released at the end


async def test_unknown_sources_and_bad_filters_are_reported(tmp_path: Path, source_key: str) -> None:
    path = await _fleet_file(tmp_path, source_key, 1)
    extra = bench_spec(99, source_key=f"{source_key}-missing")
    path.write_text(connectors_yaml([bench_spec(0, source_key=f"{source_key}-00"), extra]))
    with pytest.raises(FleetFailed) as caught:
        await sync_fleet(connectors_file=str(path), concurrency_limit=None)
    missing = next(o for o in caught.value.summary.outcomes if o.source_key == extra.source_key)
    assert missing.step == "lookup" and "splendor-flows apply" in (missing.error or "")
    from splendor_flows.specs.connectors_file import ConnectorsFileError

    with pytest.raises(ConnectorsFileError, match="matches no source_key"):
        await sync_fleet(connectors_file=str(path), only=["zzz-*"], concurrency_limit=None)
    await asyncio.sleep(0)


async def test_a_global_concurrency_limit_of_zero_fails_at_once(tmp_path: Path, source_key: str) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from splendor_flows.fleet.run import ConcurrencyLimitClosed

    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml([bench_spec(0, source_key=f"{source_key}-00")]))
    name = f"splendor-api-{source_key}"
    async with get_client() as client:
        await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=0))
    # Waiting for a slot of a 0-slot limit never ends: the timeout turns that into a failure here.
    with pytest.raises(ConcurrencyLimitClosed) as caught:
        await asyncio.wait_for(sync_fleet(connectors_file=str(path), concurrency_limit=name), timeout=60)
    assert f"global concurrency limit '{name}' allows 0 slots" in str(caught.value)
    assert f"prefect gcl update {name} --limit" in str(caught.value)


async def test_a_source_held_elsewhere_waits_while_the_rest_of_the_fleet_syncs(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """The fleet holds its sources in batches; a batch with one source another pipeline holds falls back
    to one hold per source: the others sync at once, the held one only once it is released.

    The other pipeline lets go only once the other three sources have a run, so a fleet that waited for
    the held source before starting the rest would never let it go (the bound below turns that into a
    failure): the order is checked by cause, not by timing, which a loaded machine would blur."""
    import time
    from datetime import datetime

    from splendor_flows.orchestration.scope import Scope
    from splendor_flows.orchestration.source_lock import hold_source

    path = await _fleet_file(tmp_path, source_key, 4)
    keys = [f"{source_key}-{i:02d}" for i in range(4)]
    held = keys[2]
    scope = Scope(api_base=emulator.base_url, tenant="acme", source_key=held, sync_id="elsewhere")
    released_at: list[float] = []
    others_started: list[bool] = []

    def started_keys() -> set[str]:
        ids = {s["source_key"]: s["source_id"] for s in emulator.sources("acme")}
        return {key for key, source_id in ids.items() if emulator.runs("acme", source_id=source_id)}

    async def other_pipeline(started: asyncio.Event) -> None:
        async with hold_source(scope, wait_seconds=30):
            started.set()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not set(keys) - {held} <= started_keys():
                await asyncio.sleep(0.2)
            others_started.append(set(keys) - {held} <= started_keys())
            assert held not in started_keys()
            released_at.append(time.time())

    started = asyncio.Event()
    other = asyncio.create_task(other_pipeline(started))
    await started.wait()
    summary = await sync_fleet(connectors_file=str(path), concurrency_limit=None)
    await other
    assert summary.succeeded == 4
    # The rest of the fleet started while the source was held elsewhere.
    assert others_started == [True]
    # The held source started only after the other pipeline let it go.
    ids = {s["source_key"]: s["source_id"] for s in emulator.sources("acme")}
    held_run = emulator.runs("acme", source_id=ids[held])[-1]
    assert datetime.fromisoformat(held_run["created_at"]).timestamp() >= released_at[0] - 0.5
