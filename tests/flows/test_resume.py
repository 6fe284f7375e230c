"""Resume: a pipeline that failed at any step finishes in a new run with the same sync_id,
without repeating the mutating calls of the steps that had finished.

The state machines' rules on their own (attempt bounds, `incomplete`, zero records, ...) are
tested in tests/engine in milliseconds; these prove the Prefect wiring keeps them across runs."""

import uuid

import pytest

from splendor_emulator import Emulator
from splendor_flows.engine.polling import PollOptions
from splendor_flows.flows.connect_source import connect_source
from tests.flows.conftest import mutating_counts, stripe_spec

FAST_POLL = PollOptions(initial_seconds=0.2, cap_seconds=0.5, deadline_seconds=2.5)

# step that fails → (route to break, mutating steps that must have finished before it)
FAILURES = {
    "discover": ("POST /v1/admin/connector-providers/{provider_key}/airbyte-discovery", []),
    "create": ("POST /v1/admin/airbyte-sources", []),
    "provision": ("POST /v1/admin/airbyte-sources/{source_id}/provision", ["create"]),
    "connect": ("POST /v1/admin/airbyte-sources/{source_id}/connection", ["create", "provision"]),
    "sync": ("POST /v1/admin/airbyte-sources/{source_id}/sync", ["create", "provision", "connect"]),
    "poll": ("POST /v1/admin/airbyte-runs/{run_id}/refresh", ["create", "provision", "connect", "sync"]),
    "enqueue": (
        "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
        ["create", "provision", "connect", "sync"],
    ),
    "ingest-ready": (
        "GET /v1/ingest/runs/{ingest_run_id}",
        ["create", "provision", "connect", "sync", "enqueue"],
    ),
}


@pytest.mark.parametrize("step", list(FAILURES))
async def test_resume_from_every_step(
    emulator: Emulator, source_key: str, stripe_secret: str, step: str
) -> None:
    route, finished_steps = FAILURES[step]
    sync_id = str(uuid.uuid4())
    spec = stripe_spec(source_key)

    emulator.add_fault(route=route, kind="unavailable", count=None, retry_after="0")
    state = await connect_source(spec=spec, sync_id=sync_id, poll=FAST_POLL, return_state=True)
    assert state.is_failed(), f"the pipeline should fail at {step}"
    emulator.clear_faults()

    before = mutating_counts(emulator)
    summary = await connect_source(spec=spec, sync_id=sync_id, poll=FAST_POLL)
    after = mutating_counts(emulator)

    assert summary.status == "succeeded" and summary.ingest_status == "ready"
    for done in finished_steps:
        assert after[done] == before[done], f"resume repeated the finished step {done}"
    sources = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    assert len(sources) == 1
    runs = emulator.runs("acme", source_id=sources[0]["source_id"])
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"


async def test_failed_sync_is_rerun_on_resume(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    sync_id = str(uuid.uuid4())
    emulator.add_fault(route="*", kind="run_fail", count=1, source_key=source_key)
    state = await connect_source(
        spec=stripe_spec(source_key), sync_id=sync_id, max_sync_attempts=1, return_state=True
    )
    assert state.is_failed()
    assert "ended failed" in str(state.message) or "failed" in str(state.message)

    summary = await connect_source(spec=stripe_spec(source_key), sync_id=sync_id, max_sync_attempts=1)
    assert summary.status == "succeeded"
    source_id = summary.source_id
    assert [r["status"] for r in emulator.runs("acme", source_id=source_id)] == ["failed", "succeeded"]


async def test_sync_started_elsewhere_is_attached(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    import httpx

    # Onboard without syncing, start a run "from the console", then run the pipeline. The console
    # run goes through 20 `incomplete` attempts (about 12 s at 0.6 s each) so it is surely still in flight
    # when asked, even after the pipeline waited for a busy Prefect server to grant the source's slot.
    first = await connect_source(spec=stripe_spec(source_key), sync=False)
    emulator.add_fault(kind="run_incomplete", times=20, count=1, source_key=source_key)
    headers = {"Authorization": "Bearer acme-admin-token", "X-Splendor-Tenant-Id": "acme"}
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers) as http:
        response = await http.post(
            f"/v1/admin/airbyte-sources/{first.source_id}/sync", json={"trigger": "manual"}
        )
        response.raise_for_status()
        console_run = response.json()["run"]["run_id"]
    summary = await connect_source(spec=stripe_spec(source_key))
    assert summary.run_id == console_run
    assert len(emulator.runs("acme", source_id=first.source_id)) == 1
