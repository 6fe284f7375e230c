"""OAuth providers: the flow publishes the consent link and waits; an admin approves."""

import asyncio
import re
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.flow_runs import aresume_flow_run

from splendor_emulator import Emulator
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.specs.source import SourceSpec
from tests.flows.conftest import mutating_counts


def oauth_spec(source_key: str, provider_key: str) -> SourceSpec:
    return SourceSpec(
        provider_key=provider_key,
        source_key=source_key,
        dataset_id="crm",
        bucket="acme-connectors",
        iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
        oauth={"timeout_seconds": 60},
    )


async def wait_for_consent_link(after: Any) -> tuple[str, UUID]:
    """The newest consent link artifact created after `after`, and the flow run that made it."""
    async with get_client() as client:
        for _ in range(300):
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["splendor-oauth-consent"]))
            )
            fresh = [a for a in artifacts if a.created and a.created > after and a.flow_run_id]
            if fresh:
                newest = max(fresh, key=lambda a: a.created)
                match = re.search(r"\((https?://[^)]+)\)", str(newest.data))
                assert match, newest.data
                return match.group(1), newest.flow_run_id  # type: ignore[return-value]
            await asyncio.sleep(0.2)
    raise AssertionError("no consent link was published")


async def resume_when_paused(flow_run_id: UUID, run_input: dict[str, Any]) -> None:
    """What the admin's resume form does, once the run is actually paused: the consent link is published
    just before the pause, and resuming a run that is not paused yet is refused (NotPausedError)."""
    async with get_client() as client:
        for _ in range(300):
            run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_paused():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"flow run {flow_run_id} never paused for the consent")
    await aresume_flow_run(flow_run_id, run_input=run_input)


async def approve(consent_url: str) -> str:
    """What an admin does in the browser: open the consent page, approve, read the secret_id."""
    async with httpx.AsyncClient(follow_redirects=True) as http:
        response = await http.get(
            consent_url, params={"approve": "true"}, headers={"Accept": "application/json"}
        )
        response.raise_for_status()
        return str(response.json()["secret_id"])


async def _now() -> Any:
    async with get_client() as client:
        return (await client.hello()).headers.get("date") and __import__("datetime").datetime.now(
            __import__("datetime").UTC
        )


async def test_airbyte_oauth_pauses_until_an_admin_approves(emulator: Emulator, source_key: str) -> None:
    completions = mutating_counts(emulator)["oauth"]
    started = await _now()
    pipeline = asyncio.create_task(connect_source(spec=oauth_spec(source_key, "salesforce")))
    consent_url, flow_run_id = await wait_for_consent_link(started)
    secret_id = await approve(consent_url)
    await resume_when_paused(flow_run_id, {"secret_id": secret_id})
    summary = await asyncio.wait_for(pipeline, timeout=90)
    assert summary.status == "succeeded" and summary.ingest_status == "ready"
    assert mutating_counts(emulator)["oauth"] == completions + 1
    # The answer to the resume form is deleted once used: no secret_id left in plain run input.
    async with get_client() as client:
        inputs = await client.filter_flow_run_input(flow_run_id, key_prefix="", limit=100, exclude_keys=set())
    assert inputs and not [i for i in inputs if secret_id in i.value]


async def test_airbyte_oauth_with_secret_id_up_front_does_not_pause(
    emulator: Emulator, source_key: str
) -> None:
    # First run: let it pause, take the secret_id the admin got, then cancel that wait by timing out.
    spec = oauth_spec(source_key, "salesforce")
    completions = mutating_counts(emulator)["oauth"]
    started = await _now()
    pipeline = asyncio.create_task(connect_source(spec=spec, return_state=True))
    consent_url, _ = await wait_for_consent_link(started)
    secret_id = await approve(consent_url)
    pipeline.cancel()
    # Automation path: a new run given a Secret block holding the secret_id completes without a pause,
    # and the secret_id is in none of its parameters.
    await Secret(value=secret_id).save(f"{source_key}-oauth", overwrite=True)
    state = await asyncio.wait_for(
        connect_source(spec=spec, oauth_secret_block=f"{source_key}-oauth", return_state=True), timeout=90
    )
    summary = await state.aresult()
    assert summary.status == "succeeded"
    # The secret_id was used once, by the second run: the cancelled wait completed nothing.
    assert mutating_counts(emulator)["oauth"] == completions + 1
    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    assert secret_id not in str(run.parameters)


async def test_an_unanswered_consent_fails_the_run_after_one_consent_link(
    emulator: Emulator, source_key: str
) -> None:
    spec = SourceSpec.model_validate(
        {**oauth_spec(source_key, "salesforce").model_dump(), "oauth": {"timeout_seconds": 10}}
    )
    completions = mutating_counts(emulator)["oauth"]
    started = await _now()
    state = await asyncio.wait_for(connect_source(spec=spec, return_state=True), timeout=90)
    assert state.is_failed(), state
    assert "nobody approved the OAuth consent within 10 s" in str(state.message)
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["splendor-oauth-consent"]))
        )
    links = [
        a
        for a in artifacts
        if a.created and a.created > started and a.flow_run_id == state.state_details.flow_run_id
    ]
    assert len(links) == 1  # no retry published a second link
    assert mutating_counts(emulator)["oauth"] == completions


async def test_splendor_oauth_waits_for_ready(emulator: Emulator, source_key: str) -> None:
    started = await _now()
    pipeline = asyncio.create_task(connect_source(spec=oauth_spec(source_key, "google-drive")))
    consent_url, _ = await wait_for_consent_link(started)
    await approve(consent_url)
    summary = await asyncio.wait_for(pipeline, timeout=90)
    assert summary.status == "succeeded"
