"""OAuth consent, at the level of the flow run: one consent link, one wait for an admin, one answer.

Why here and not in the provision task: a task that pauses and times out is retried by Prefect, which
then publishes a second consent link and cannot pause again (the run was left Paused with its task
Retrying). The wait is the flow run's:

- a deployment run suspends: its worker is released, the admin approves in the provider's page and
  pastes the secret_id into the run's resume form, and the run starts again from the top, where its
  checkpoints make the finished steps free and the suspend hands back the answer;
- a local run (CLI, tests) pauses in place, since there is no deployment to resubmit it.

Nobody answering within `timeout_seconds` ends the run Failed, naming the wait. A paused run's timeout
raises here; a suspended run has no process left to raise, so the automation
`splendor-fail-unanswered-oauth` (deployments/automations.yaml) fails it. The secret_id is a
credential: it is never a flow parameter (Prefect stores those in plain text), the resume form's answer
is deleted from the server as soon as Splendor has used or refused it, and an automation that already
knows it passes the name of a Secret block holding it.
"""

import asyncio
from typing import Any
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.artifacts import acreate_link_artifact
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput, keyset_from_paused_state
from prefect.runtime import deployment, flow_run
from prefect.states import Paused, Suspended
from pydantic import Field

from splendor_api import OutcomeUnknown, SplendorClient, ValidationFailed
from splendor_api.models import CredentialStatus
from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import CredentialState
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.events import emit, remember_secrets
from splendor_flows.tasks.discover import ProviderDetails
from splendor_flows.tasks.provision import announce_ready, credential_status

STEP = "provision"
PAUSE_GRACE_SECONDS = 60


class OAuthApproval(RunInput):
    """What the admin pastes into the Prefect UI's resume form after approving consent."""

    secret_id: str = Field(min_length=1, max_length=512, description="secret_id from the consent redirect")


def _response_keys(pause_key: str) -> list[str]:
    # Where Prefect stores the resume form's answer (prefect.input.keyset_from_paused_state): the key
    # starts with the state's name, so a pause and a suspend of the same key differ.
    states: list[State[Any]] = [Paused(pause_key=pause_key), Suspended(pause_key=pause_key)]
    return [keyset_from_paused_state(state)["response"] for state in states]


async def _answered(pause_key: str) -> bool:
    """Whether this flow run's resume form was already answered (a suspended run starting again)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return False
    async with get_client() as client:
        for key in _response_keys(pause_key):
            try:
                await client.read_flow_run_input(UUID(run_id), key)
                return True
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
    return False


async def _forget_answer(pause_key: str) -> None:
    """Delete the resume form's answer (the secret_id, in plain text) from the Prefect server."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    try:
        async with get_client() as client:
            for key in _response_keys(pause_key):
                try:
                    await client.delete_flow_run_input(UUID(run_id), key)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
    except httpx.HTTPError as exc:
        # Credentials are settled by now: a failed clean-up must not fail the pipeline, but must be seen.
        get_run_logger().warning(
            "Could not delete this run's OAuth resume input (%s); delete it by hand", type(exc).__name__
        )


async def _publish_consent(
    scope: Scope, source_id: int, provider: ProviderDetails, consent_url: str, timeout_seconds: int
) -> None:
    # The link itself stays out of the event: it is for whoever may approve (the run's artifact and
    # log), not for every reader of the event feed or of a notification channel.
    emit(
        Event.CREDENTIALS_WAITING,
        scope,
        {"source_id": source_id, "oauth_mode": provider.oauth_mode, "timeout_seconds": timeout_seconds},
    )
    get_run_logger().info(
        "Approve access for source '%s' within %s s at: %s", scope.source_key, timeout_seconds, consent_url
    )
    await acreate_link_artifact(
        link=consent_url,
        link_text=f"Approve {scope.source_key} access",
        key="splendor-oauth-consent",
        description="Open, approve, then paste the secret_id into this run's resume form.",
    )


async def _wait_for_admin(scope: Scope, pause_key: str, timeout_seconds: int) -> str:
    unanswered = PermanentStepError(
        STEP,
        scope.source_key,
        f"nobody approved the OAuth consent within {timeout_seconds} s",
        "start the pipeline again with the same sync_id to publish a new consent link",
    )
    try:
        if deployment.id is not None:
            approval = await asuspend_flow_run(
                wait_for_input=OAuthApproval, timeout=timeout_seconds, key=pause_key
            )
            if approval is None:  # resumed without the form's answer
                raise unanswered
        else:
            # The server's pause outlives our wait by a grace period: once a pause has expired, Prefect
            # replaces whatever state the run proposes with its own "never resumed" failure, and the
            # run would end without saying which wait nobody answered.
            approval = await asyncio.wait_for(
                apause_flow_run(
                    wait_for_input=OAuthApproval,
                    timeout=timeout_seconds + PAUSE_GRACE_SECONDS,
                    poll_interval=2,
                    key=pause_key,
                ),
                timeout_seconds,
            )
    except (TimeoutError, FlowPauseTimeout):
        raise unanswered from None
    return approval.secret_id


async def _secret_from_block(scope: Scope, block_name: str) -> str:
    try:
        block: Secret[str] = await Secret.aload(block_name)
    except ValueError:
        raise SpecError(
            scope.source_key, f"oauth_secret_block: no Secret block named '{block_name}'"
        ) from None
    value = block.get()
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            scope.source_key, f"oauth_secret_block: '{block_name}' must hold the secret_id as text"
        )
    return value.strip()


async def _complete(client: SplendorClient, scope: Scope, source_id: int, secret_id: str) -> None:
    try:
        await client.complete_oauth(source_id, secret_id)
    except OutcomeUnknown:
        if await credential_status(client, source_id) != CredentialStatus.READY:
            raise
    except ValidationFailed:
        raise PermanentStepError(
            STEP,
            scope.source_key,
            "Splendor did not accept the secret_id (unknown or already used)",
            "approve the consent again and start the pipeline again with the same sync_id",
        ) from None


async def _wait_ready(client: SplendorClient, scope: Scope, source_id: int, timeout_seconds: int) -> None:
    """oauth_mode=splendor: Splendor runs the OAuth itself; its callback flips the status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    delay = 1.0
    while loop.time() < deadline:
        status = await credential_status(client, source_id)
        if status == CredentialStatus.READY:
            return
        if status == CredentialStatus.FAILED:
            raise PermanentStepError(
                STEP, scope.source_key, "OAuth authorisation failed (credential_status=failed)"
            )
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 1.5, 10.0)
    raise PermanentStepError(
        STEP,
        scope.source_key,
        f"nobody approved the OAuth consent within {timeout_seconds} s",
        "start the pipeline again with the same sync_id to publish a new consent link",
    )


async def connect_oauth(
    scope: Scope,
    source_id: int,
    provider: ProviderDetails,
    *,
    timeout_seconds: int,
    secret_block: str | None = None,
) -> CredentialState:
    """Publish one consent link, wait for the admin (or read the secret_id from a Secret block), and
    complete the OAuth; returns once Splendor reports the credentials ready."""
    pause_key = f"oauth-{source_id}"
    async with open_client(scope.credentials_block, step=STEP, source_key=scope.source_key) as client:
        status = await credential_status(client, source_id)
        if status == CredentialStatus.READY:
            return announce_ready(
                scope, CredentialState(source_id=source_id, credential_status=status, provisioned=False)
            )
        secret_id = await _secret_from_block(scope, secret_block) if secret_block else None
        # A suspended run starting again after the admin answered has published its link already.
        resumed = secret_id is None and await _answered(pause_key)
        if not resumed and not (secret_id and status == CredentialStatus.PENDING_OAUTH):
            result = await client.provision(source_id, {})
            status = result.airbyte.credential_status
            if status != CredentialStatus.READY and secret_id is None:
                if not result.consent_url:
                    raise PermanentStepError(
                        STEP, scope.source_key, "OAuth provision returned no consent_url"
                    )
                await _publish_consent(scope, source_id, provider, result.consent_url, timeout_seconds)
        if status != CredentialStatus.READY:
            if provider.oauth_mode == "splendor":
                await _wait_ready(client, scope, source_id, timeout_seconds)
            else:
                from_form = secret_id is None
                if from_form:
                    secret_id = await _wait_for_admin(scope, pause_key, timeout_seconds)
                assert secret_id is not None
                remember_secrets([secret_id])
                try:
                    await _complete(client, scope, source_id, secret_id)
                finally:
                    if from_form:
                        await _forget_answer(pause_key)
        status = await credential_status(client, source_id)
    if status != CredentialStatus.READY:
        raise PermanentStepError(
            STEP, scope.source_key, f"credentials are not ready (credential_status={status})"
        )
    get_run_logger().info("Credentials of source %s are ready", source_id)
    return announce_ready(
        scope, CredentialState(source_id=source_id, credential_status=status, provisioned=True)
    )
