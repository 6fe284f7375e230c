"""The events real pipelines publish, read back from the Prefect server that recorded them.

Each pipeline runs against the emulator and the test server; the assertions are on the server's
copy of the events (names in order, resource, labels, payload fields), not on what the code meant to
send. Every event of these runs is also searched for the secrets the runs handled.
"""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL

from bench.seed import connectors_yaml
from splendor_emulator import Emulator
from splendor_flows.engine.report import Event
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.flows.sync_fleet import sync_fleet
from splendor_flows.flows.sync_source import sync_source
from tests.flows.conftest import TEST_ENV, stripe_spec
from tests.flows.test_oauth import _now, approve, oauth_spec, resume_when_paused, wait_for_consent_link
from tests.prefect_events import wait_for_events

CREDENTIAL = "sk_test_canary-cred-4f1b9e"  # the stripe_secret fixture's api_key
SYNC_STEPS = [Event.SYNC_STARTED, Event.SYNC_SUCCEEDED, Event.INGEST_ENQUEUED, Event.INGEST_READY]


@pytest.fixture(autouse=True)
async def events_to_this_server() -> None:
    # Prefect's events worker is process-wide and keeps the API it started with (in a full run, another
    # suite's server): restart it on this harness's API.
    await EventsWorker.drain_all(at_exit=False)


def api_url() -> str:
    return str(PREFECT_API_URL.value())


async def events_of(source_key: str, until: list[Event]) -> list[dict[str, Any]]:
    """The source's events, once every name in `until` has arrived (in any order)."""
    wanted = [str(name) for name in until]

    def arrived(events: list[dict[str, Any]]) -> bool:
        names = [e["event"] for e in events]
        return all(names.count(n) >= wanted.count(n) for n in wanted)

    return await wait_for_events(api_url(), arrived, resource_prefix=resource_id(source_key))


def resource_id(source_key: str) -> str:
    return f"splendor.source.acme.{source_key}"


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def one(events: list[dict[str, Any]], name: Event) -> dict[str, Any]:
    [found] = [e["payload"] for e in events if e["event"] == name]
    return found


def assert_resource(events: list[dict[str, Any]], source_key: str) -> None:
    for event in events:
        assert event["resource"] == {
            "prefect.resource.id": resource_id(source_key),
            "splendor.tenant": "acme",
            "splendor.source_key": source_key,
        }, event
        assert event["payload"]["tenant"] == "acme" and event["payload"]["source_key"] == source_key


def assert_no_secret(events: list[dict[str, Any]], secrets: list[str]) -> None:
    blob = json.dumps(events)
    assert not [s for s in secrets if s in blob], "a secret reached an event"


async def test_a_connect_source_run_publishes_every_step_in_order(
    emulator: Emulator, source_key: str, stripe_secret: str, tmp_path: Path
) -> None:
    state = await connect_source(spec=stripe_spec(source_key), return_state=True)
    summary = await state.aresult()
    flow_run_id = str(state.state_details.flow_run_id)
    events = await events_of(source_key, [Event.SOURCE_CREATED, *SYNC_STEPS])

    assert names(events) == [
        Event.SOURCE_CREATED,
        Event.CREDENTIALS_READY,
        Event.CONNECTION_CREATED,
        *SYNC_STEPS,
    ]
    assert_resource(events, source_key)
    for event in events:
        assert event["payload"]["sync_id"] == summary.sync_id
        assert event["payload"]["flow_run_id"] == flow_run_id
    assert one(events, Event.SOURCE_CREATED)["source_id"] == summary.source_id
    assert one(events, Event.SOURCE_CREATED)["provider_key"] == "stripe"
    ready = one(events, Event.CREDENTIALS_READY)
    assert (ready["source_id"], ready["credential_status"], ready["provisioned"]) == (
        summary.source_id,
        "ready",
        True,
    )
    connection = one(events, Event.CONNECTION_CREATED)
    assert connection["connection_id"] and connection["streams"] == ["charges", "customers"]
    started = one(events, Event.SYNC_STARTED)
    assert (started["source_id"], started["run_id"], started["attempt"]) == (
        summary.source_id,
        summary.run_id,
        1,
    )
    succeeded = one(events, Event.SYNC_SUCCEEDED)
    assert (succeeded["run_id"], succeeded["status"], succeeded["error_message"]) == (
        summary.run_id,
        "succeeded",
        None,
    )
    assert succeeded["records_synced"] == summary.records_synced > 0
    assert succeeded["source_id"] == summary.source_id
    assert one(events, Event.INGEST_ENQUEUED)["ingest_run_ids"] == summary.ingest_run_ids
    assert one(events, Event.INGEST_READY)["documents"] == summary.documents > 0

    # Connecting the same spec again adopts the source: `reused`, and credentials found ready.
    again = await connect_source(spec=stripe_spec(source_key), sync=False, return_state=True)
    assert again.is_completed()
    events = await events_of(
        source_key,
        [
            Event.SOURCE_CREATED,
            *SYNC_STEPS,
            Event.SOURCE_REUSED,
            Event.CREDENTIALS_READY,
            Event.CREDENTIALS_READY,
        ],
    )
    later = [e for e in events if e["payload"]["flow_run_id"] == str(again.state_details.flow_run_id)]
    assert names(later) == [Event.SOURCE_REUSED, Event.CREDENTIALS_READY]
    assert one(later, Event.SOURCE_REUSED)["source_id"] == summary.source_id
    assert one(later, Event.CREDENTIALS_READY)["provisioned"] is False

    # The fleet runs the same engine steps: the same events, with the same payload fields.
    connectors = tmp_path / "connectors.yaml"
    connectors.write_text(connectors_yaml([stripe_spec(source_key)]))
    fleet = await sync_fleet(
        connectors_file=str(connectors), wait_for_ingest=True, concurrency_limit=None, return_state=True
    )
    fleet_run = str(fleet.state_details.flow_run_id)
    events = await events_of(source_key, [Event.SOURCE_CREATED, *SYNC_STEPS, *SYNC_STEPS])
    from_fleet = [e for e in events if e["payload"]["flow_run_id"] == fleet_run]
    assert names(from_fleet) == SYNC_STEPS
    assert_resource(from_fleet, source_key)
    per_step = {e["event"]: set(e["payload"]) for e in events if e["payload"]["flow_run_id"] == flow_run_id}
    assert {e["event"]: set(e["payload"]) for e in from_fleet} == {n: per_step[n] for n in SYNC_STEPS}
    assert_no_secret(events, [TEST_ENV["SPLENDOR_TOKEN"], CREDENTIAL])


async def test_an_oauth_run_publishes_that_it_waits_for_consent(emulator: Emulator, source_key: str) -> None:
    started = await _now()
    pipeline = asyncio.create_task(connect_source(spec=oauth_spec(source_key, "salesforce")))
    consent_url, flow_run_id = await wait_for_consent_link(started)
    waiting = await events_of(source_key, [Event.CREDENTIALS_WAITING])
    assert names(waiting) == [Event.SOURCE_CREATED, Event.CREDENTIALS_WAITING]
    secret_id = await approve(consent_url)
    await resume_when_paused(flow_run_id, {"secret_id": secret_id})
    summary = await asyncio.wait_for(pipeline, timeout=90)
    events = await events_of(source_key, [Event.CREDENTIALS_WAITING, *SYNC_STEPS])

    assert names(events) == [
        Event.SOURCE_CREATED,
        Event.CREDENTIALS_WAITING,
        Event.CREDENTIALS_READY,
        Event.CONNECTION_CREATED,
        *SYNC_STEPS,
    ]
    assert_resource(events, source_key)
    wait = one(events, Event.CREDENTIALS_WAITING)
    assert (wait["source_id"], wait["oauth_mode"], wait["timeout_seconds"]) == (
        summary.source_id,
        "airbyte",
        60,
    )
    assert wait["flow_run_id"] == str(flow_run_id)
    # The consent link (it carries the OAuth state) is for the approver, not for the event feed.
    assert "consent" not in json.dumps(wait).lower() and "http" not in json.dumps(wait)
    assert one(events, Event.CREDENTIALS_READY)["provisioned"] is True
    assert_no_secret(events, [TEST_ENV["SPLENDOR_TOKEN"], secret_id])


async def test_a_failed_sync_publishes_the_error_with_secrets_masked(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    # A connector that quotes what it was given in its error: the credential and the API token come
    # back from Splendor inside the run's error_message.
    token = TEST_ENV["SPLENDOR_TOKEN"]
    message = f"401 from api.stripe.com for key {CREDENTIAL} (caller {token})"
    emulator.add_fault(kind="run_fail", count=1, source_key=source_key, error_message=message)
    state = await connect_source(spec=stripe_spec(source_key), max_sync_attempts=1, return_state=True)
    assert state.is_failed()
    events = await events_of(source_key, [Event.SYNC_FAILED])

    assert names(events) == [
        Event.SOURCE_CREATED,
        Event.CREDENTIALS_READY,
        Event.CONNECTION_CREATED,
        Event.SYNC_STARTED,
        Event.SYNC_FAILED,
    ]
    assert_resource(events, source_key)
    failed = one(events, Event.SYNC_FAILED)
    assert failed["status"] == "failed" and failed["run_id"] == one(events, Event.SYNC_STARTED)["run_id"]
    assert failed["error_message"] == "401 from api.stripe.com for key *** (caller ***)"
    assert failed["flow_run_id"] == str(state.state_details.flow_run_id)
    assert_no_secret(events, [token, CREDENTIAL])
    # The run's state message quotes the same error (the flow-run failure notification sends it on):
    # masked the same way.
    assert "401 from api.stripe.com for key *** (caller ***)" in str(state.message), state.message
    assert token not in str(state.message) and CREDENTIAL not in str(state.message)


async def test_a_failed_ingest_publishes_its_error_code_and_message(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    await connect_source(spec=stripe_spec(source_key))
    emulator.add_fault(kind="ingest_fail", count=1, source_key=source_key)
    sync_id = str(uuid.uuid4())
    state = await sync_source(source_key=source_key, sync_id=sync_id, return_state=True)
    assert state.is_failed()
    events = await events_of(source_key, [*SYNC_STEPS, Event.SYNC_STARTED, Event.INGEST_FAILED])
    recurring = [e for e in events if e["payload"]["sync_id"] == sync_id]

    assert names(recurring) == [
        Event.SYNC_STARTED,
        Event.SYNC_SUCCEEDED,
        Event.INGEST_ENQUEUED,
        Event.INGEST_FAILED,
    ]
    assert_resource(recurring, source_key)
    failed = one(recurring, Event.INGEST_FAILED)
    enqueued = one(recurring, Event.INGEST_ENQUEUED)
    assert failed["run_id"] == enqueued["run_id"] and failed["failed"]
    assert set(failed["failed"]) <= set(enqueued["ingest_run_ids"])
    [error, *_] = failed["errors"]
    assert (error["status"], error["error_code"]) == ("failed", "parse_failed")
    assert error["error_message"] and error["error_message"] in failed["error_message"]
    assert failed["flow_run_id"] == str(state.state_details.flow_run_id)
    assert_no_secret(events, [TEST_ENV["SPLENDOR_TOKEN"], CREDENTIAL])
