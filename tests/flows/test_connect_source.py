"""connect_source end to end against the emulator: happy paths, bad specs, faults."""

import uuid

from splendor_emulator import Emulator
from splendor_flows.flows.connect_source import connect_source
from tests.flows.conftest import mutating_counts, stripe_spec


async def test_api_key_provider_happy_path(emulator: Emulator, source_key: str, stripe_secret: str) -> None:
    before = mutating_counts(emulator)
    summary = await connect_source(spec=stripe_spec(source_key))
    after = mutating_counts(emulator)

    assert summary.status == "succeeded"
    assert summary.records_synced and summary.records_synced > 0
    assert summary.ingest_status == "ready"
    assert summary.documents == summary.records_synced
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "create": 1,
        "provision": 1,
        "oauth": 0,
        "connect": 1,
        "sync": 1,
        "enqueue": 1,
        "update": 0,
    }
    files = sorted(emulator.bucket_root.rglob(f"{source_key}/*/run-{summary.run_id}.jsonl"))
    assert {f.parent.name for f in files} == {"charges", "customers"}
    assert sum(len(f.read_text().splitlines()) for f in files) == summary.records_synced


async def test_second_connect_reuses_the_source(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    first = await connect_source(spec=stripe_spec(source_key))
    before = mutating_counts(emulator)
    second = await connect_source(spec=stripe_spec(source_key))
    after = mutating_counts(emulator)
    assert second.source_id == first.source_id
    assert second.run_id != first.run_id  # a new run id → a new sync
    delta = {k: after[k] - before[k] for k in after}
    assert delta["create"] == 0 and delta["provision"] == 0 and delta["connect"] == 0
    assert delta["sync"] == 1
    assert len([s for s in emulator.sources("acme") if s["source_key"] == source_key]) == 1


async def test_same_sync_id_twice_makes_no_new_calls(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    sync_id = str(uuid.uuid4())
    first = await connect_source(spec=stripe_spec(source_key), sync_id=sync_id)
    before = mutating_counts(emulator)
    second = await connect_source(spec=stripe_spec(source_key), sync_id=sync_id)
    assert mutating_counts(emulator) == before
    assert second.run_id == first.run_id


async def test_storm_of_503_and_dropped_connections(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    # Every mutating route first sheds load twice, then processes a call but drops the connection
    # (faults apply in the order they were added).
    for route in (
        "POST /v1/admin/airbyte-sources",
        "POST /v1/admin/airbyte-sources/{source_id}/provision",
        "POST /v1/admin/airbyte-sources/{source_id}/connection",
        "POST /v1/admin/airbyte-sources/{source_id}/sync",
        "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
    ):
        emulator.add_fault(route=route, kind="unavailable", count=2, retry_after="0")
        emulator.add_fault(route=route, kind="drop_after", count=1)
    emulator.add_fault(
        route="POST /v1/admin/airbyte-runs/{run_id}/refresh", kind="unavailable", count=3, retry_after="0"
    )

    summary = await connect_source(spec=stripe_spec(source_key))

    assert summary.status == "succeeded" and summary.ingest_status == "ready"
    sources = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    assert len(sources) == 1
    runs = emulator.runs("acme", source_id=sources[0]["source_id"])
    assert [r["status"] for r in runs] == ["succeeded"]
    ingest = [r for r in emulator.ingest_runs("acme") if r["source_id"] == sources[0]["source_id"]]
    assert len(ingest) == 2  # one per stream, enqueued once
