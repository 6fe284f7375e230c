"""Field classification with approval: propose, publish, wait for the admin's answer, apply once."""

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.input.actions import acreate_flow_run_input
from prefect.settings import PREFECT_API_URL

from splendor_emulator import Emulator
from splendor_flows.engine.classification import Classification, FieldProposal, Role
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.human_waits.classification_review import _ask_admin, artifact_key
from splendor_flows.orchestration.scope import Scope
from tests.flows.conftest import mutating_counts, stripe_spec
from tests.prefect_events import wait_for_events

APPLIED = "splendor.classification.applied"
# What the rules propose for Stripe's charges and customers streams (the emulator's catalog).
PROPOSED_TEXT = ["description", "name"]
PROPOSED_VOCABULARY = ["currency", "status"]


def _key(source_key: str) -> str:
    return artifact_key(Scope(api_base="", tenant="acme", source_key=source_key, sync_id=""))


async def _artifacts(source_key: str) -> list[Artifact]:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[_key(source_key)]))
        )


async def waiting_run(source_key: str, pipeline: "asyncio.Task[Any]") -> FlowRun:
    """The flow run that published this source's proposal, once it is paused for the answer."""
    async with get_client() as client:
        for _ in range(400):
            if pipeline.done():
                raise AssertionError(f"the run ended instead of waiting: {pipeline.result()}")
            found = [a for a in await _artifacts(source_key) if a.flow_run_id]
            if found:
                run = await client.read_flow_run(found[0].flow_run_id)  # type: ignore[arg-type]
                if run.state and run.state.is_paused():
                    return run
            await asyncio.sleep(0.1)
    raise AssertionError("no run paused for a classification review")


async def answer(run_id: UUID, run_input: dict[str, Any]) -> Any:
    """What the UI's resume form sends; the server's verdict (accepted, or refused with its reason)."""
    async with get_client() as client:
        return await client.resume_flow_run(run_id, run_input=run_input)


def source_of(emulator: Emulator, source_key: str) -> dict[str, Any]:
    [found] = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    return found


def roles_on_splendor(source: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    search, semantic = source.get("search_config") or {}, source.get("semantic_config") or {}
    text = sorted(f["field"] for f in search.get("text_fields", []))
    embedded = sorted(f["field"] for f in semantic.get("document_embeddings", {}).get("fields", []))
    vocabulary = sorted(f["field"] for f in semantic.get("vocabulary", {}).get("fields", []))
    return text, embedded, vocabulary


async def applied_events(source_key: str, timeout: float = 20) -> list[dict[str, Any]]:
    """The classification events of this source on the Prefect server (they arrive in the background)."""
    resource = f"splendor.source.acme.{source_key}"

    def mine(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e for e in events if e["event"] == APPLIED and e["resource"]["prefect.resource.id"] == resource
        ]

    api = str(PREFECT_API_URL.value())
    return mine(
        await wait_for_events(api, lambda e: bool(mine(e)), resource_prefix=resource, timeout=timeout)
    )


async def test_review_approved_as_proposed_applies_the_proposal(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="review")
    pipeline = asyncio.create_task(connect_source(spec=spec))
    run = await waiting_run(source_key, pipeline)

    # The proposal is a table artifact of the waiting run: one row per field, each with its reason.
    [artifact] = await _artifacts(source_key)
    assert artifact.type == "table" and artifact.flow_run_id == run.id
    rows = artifact.data if isinstance(artifact.data, list) else __import__("json").loads(str(artifact.data))
    assert {"field", "stream", "type", "proposed role", "reason"} <= set(rows[0])
    assert {(r["stream"], r["field"], r["proposed role"]) for r in rows} >= {
        ("charges", "description", "text"),
        ("customers", "name", "text"),
        ("charges", "status", "vocabulary"),
        ("charges", "id", "filter"),
    }
    assert all(r["reason"] for r in rows)
    # Nothing applied and nothing connected while the admin has not answered.
    assert roles_on_splendor(source_of(emulator, source_key)) == ([], [], [])
    assert source_of(emulator, source_key)["airbyte"]["airbyte_connection_id"] is None

    result = await answer(run.id, {"decision": "approve"})
    assert result.status == SetStateStatus.ACCEPT, result
    summary = await asyncio.wait_for(pipeline, timeout=90)
    assert summary.status == "succeeded" and summary.ingest_status == "ready"
    classify = next(s for s in summary.steps if s["step"] == "classify")
    assert classify["result"].startswith("applied (review): 2 text, 2 vocabulary")

    text, embedded, vocabulary = roles_on_splendor(source_of(emulator, source_key))
    assert (text, embedded, vocabulary) == (PROPOSED_TEXT, PROPOSED_TEXT, PROPOSED_VOCABULARY)
    [event] = await applied_events(source_key)
    payload = event["payload"]
    assert payload["text"] == PROPOSED_TEXT and payload["vocabulary"] == PROPOSED_VOCABULARY
    assert "id" in payload["filter"] and payload["mode"] == "review"
    assert "sk_test" not in str(event)


async def test_review_with_edited_lists_applies_exactly_the_edit(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="review")
    pipeline = asyncio.create_task(connect_source(spec=spec, sync=False))
    run = await waiting_run(source_key, pipeline)

    # A name that is not a discovered field is refused by the form itself: the run keeps waiting.
    refused = await answer(run.id, {"decision": "approve", "text_fields": ["descripton"]})
    assert refused.status != SetStateStatus.ACCEPT
    assert "descripton" in str(refused.details)
    async with get_client() as client:
        assert (await client.read_flow_run(run.id)).state.is_paused()  # type: ignore[union-attr]

    edited = {
        "decision": "approve",
        "text_fields": ["description"],
        "vocabulary_fields": ["status", "customer"],
    }
    assert (await answer(run.id, edited)).status == SetStateStatus.ACCEPT
    summary = await asyncio.wait_for(pipeline, timeout=90)
    assert summary.status == "connected"
    text, embedded, vocabulary = roles_on_splendor(source_of(emulator, source_key))
    assert (text, embedded, vocabulary) == (["description"], ["description"], ["customer", "status"])
    [event] = await applied_events(source_key)
    assert event["payload"]["text"] == ["description"] and "name" in event["payload"]["filter"]


async def test_a_rejected_classification_applies_nothing_and_fails_clearly(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="review")
    pipeline = asyncio.create_task(connect_source(spec=spec, return_state=True))
    run = await waiting_run(source_key, pipeline)
    before = mutating_counts(emulator)
    result = await answer(run.id, {"decision": "reject", "comment": "customer names are private"})
    assert result.status == SetStateStatus.ACCEPT
    state = await asyncio.wait_for(pipeline, timeout=90)
    assert state.is_failed(), state
    message = str(state.message)
    assert "[classify]" in message and "rejected the proposed classification" in message
    assert "customer names are private" in message and "nothing was applied" in message
    after = mutating_counts(emulator)
    assert after["update"] == before["update"] and after["connect"] == before["connect"]
    assert roles_on_splendor(source_of(emulator, source_key)) == ([], [], [])
    assert await applied_events(source_key, timeout=2) == []


async def test_explicit_config_in_the_spec_wins_without_a_proposal(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    # A short review timeout: were the spec's config not to win, the run would fail fast instead of waiting.
    spec = stripe_spec(
        source_key,
        classification="review",
        classification_timeout_seconds=10,
        search_config={"text_fields": [{"field": "description"}]},
    )
    before = mutating_counts(emulator)
    summary = await asyncio.wait_for(connect_source(spec=spec, sync=False), timeout=60)
    assert {"step": "classify", "result": "search / semantic config from the spec"} in summary.steps
    assert await _artifacts(source_key) == []
    assert mutating_counts(emulator)["update"] == before["update"]
    assert roles_on_splendor(source_of(emulator, source_key)) == (["description"], [], [])


async def test_auto_applies_the_proposal_without_waiting(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="auto")
    summary = await asyncio.wait_for(connect_source(spec=spec, sync=False), timeout=60)
    assert next(s for s in summary.steps if s["step"] == "classify")["result"].startswith("applied (auto)")
    text, _, vocabulary = roles_on_splendor(source_of(emulator, source_key))
    assert (text, vocabulary) == (PROPOSED_TEXT, PROPOSED_VOCABULARY)
    [event] = await applied_events(source_key)
    assert event["payload"]["mode"] == "auto"


async def test_a_resumed_run_does_not_ask_again(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    # A short review timeout: a second question would fail the resumed run fast instead of waiting.
    spec = stripe_spec(source_key, classification="review", classification_timeout_seconds=20)
    sync_id = f"resume-{source_key}"
    pipeline = asyncio.create_task(connect_source(spec=spec, sync_id=sync_id, sync=False))
    run = await waiting_run(source_key, pipeline)
    # Every field a filter: the source's config then names no field, so only the checkpoint can
    # tell the same sync that the review was answered and applied.
    everything_filter = {"decision": "approve", "text_fields": [], "vocabulary_fields": []}
    assert (await answer(run.id, everything_filter)).status == SetStateStatus.ACCEPT
    await asyncio.wait_for(pipeline, timeout=90)
    assert roles_on_splendor(source_of(emulator, source_key)) == ([], [], [])
    updates = mutating_counts(emulator)["update"]

    started = datetime.now(UTC)
    again = await asyncio.wait_for(connect_source(spec=spec, sync_id=sync_id), timeout=90)
    assert again.status == "succeeded"
    assert next(s for s in again.steps if s["step"] == "classify")["result"].startswith("applied (review)")
    assert mutating_counts(emulator)["update"] == updates
    assert not [a for a in await _artifacts(source_key) if a.created and a.created > started]


async def test_a_new_sync_of_a_classified_source_does_not_ask_again(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="auto")
    await asyncio.wait_for(connect_source(spec=spec, sync=False), timeout=60)
    updates = mutating_counts(emulator)["update"]
    # Review now, a new sync_id (no checkpoint): Splendor's config says the source is classified.
    review = stripe_spec(source_key, classification="review", classification_timeout_seconds=10)
    summary = await asyncio.wait_for(connect_source(spec=review, sync=False), timeout=60)
    assert {"step": "classify", "result": "kept: the source is classified already"} in summary.steps
    assert mutating_counts(emulator)["update"] == updates
    text, _, vocabulary = roles_on_splendor(source_of(emulator, source_key))
    assert (text, vocabulary) == (PROPOSED_TEXT, PROPOSED_VOCABULARY)


async def test_an_unanswered_review_fails_naming_the_wait_and_applies_nothing(
    emulator: Emulator, stripe_secret: str, source_key: str
) -> None:
    spec = stripe_spec(source_key, classification="review", classification_timeout_seconds=10)
    before = mutating_counts(emulator)
    state = await asyncio.wait_for(connect_source(spec=spec, sync=False, return_state=True), timeout=90)
    assert state.is_failed(), state
    assert "nobody reviewed the proposed classification within 10 s; nothing was applied" in str(
        state.message
    )
    after = mutating_counts(emulator)
    assert after["update"] == before["update"] and after["connect"] == before["connect"]


# --- a run whose resume form holds an answer already (a Retried or resumed run) ------------------------

ANSWERED_SOURCE_ID = 7


def two_field_proposal() -> Classification:
    return Classification(
        fields=[
            FieldProposal(stream="charges", field="description", type="string", role=Role.TEXT, reason="r"),
            FieldProposal(stream="charges", field="status", type="string", role=Role.VOCABULARY, reason="r"),
        ]
    )


@flow(persist_result=False)
async def answered_before(source_key: str, stored: dict[str, Any]) -> Classification:
    """A run whose resume form already holds `stored`, as a suspended run's does when it starts again."""
    await acreate_flow_run_input(key=f"suspended-classify-{ANSWERED_SOURCE_ID}-response", value=stored)
    scope = Scope(api_base="", tenant="acme", source_key=source_key, sync_id=source_key)
    spec = stripe_spec(source_key, classification="review", classification_timeout_seconds=10)
    return await _ask_admin(scope, spec, ANSWERED_SOURCE_ID, two_field_proposal())


async def state_names(flow_run_id: UUID) -> list[str]:
    async with get_client() as client:
        return [s.name or "" for s in await client.read_flow_run_states(flow_run_id)]


async def test_an_answer_the_run_holds_already_is_used_without_asking(source_key: str) -> None:
    stored = {"decision": "approve", "text_fields": ["status"], "vocabulary_fields": []}
    state = await asyncio.wait_for(answered_before(source_key, stored, return_state=True), timeout=60)
    approved = await state.aresult()
    assert approved.names(Role.TEXT) == ["status"] and approved.names(Role.VOCABULARY) == []
    # Not asked: no pause, no proposal published.
    assert "Paused" not in await state_names(state.state_details.flow_run_id)
    assert await _artifacts(source_key) == []


async def test_an_answer_that_no_longer_fits_is_asked_again_with_the_proposal(source_key: str) -> None:
    stale = {"decision": "approve", "text_fields": ["a_field_discovery_no_longer_reports"]}
    state = await asyncio.wait_for(answered_before(source_key, stale, return_state=True), timeout=60)
    assert state.is_failed(), state
    assert "nobody reviewed the proposed classification within 10 s" in str(state.message)
    run_id = state.state_details.flow_run_id
    assert "Paused" in await state_names(run_id)
    [artifact] = await _artifacts(source_key)
    assert artifact.flow_run_id == run_id
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    messages = [log.message for log in logs]
    assert any("no longer fits the form; asking again" in m for m in messages)
    assert any(m.startswith("Waiting up to 10 s for an admin to review") for m in messages)
