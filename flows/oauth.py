"""OAuth consent, at the level of the flow run: one consent link, one wait for an admin, one answer.

Why here and not in the provision task: a task that pauses and times out is retried by Prefect, which
then publishes a second consent link and cannot pause again (the run was left Paused with its task
Retrying). The wait is the flow run's:

- a deployment run suspends: its worker is released, the admin approves in the provider's page and
  pastes the secret_id into the run's resume form, and the run starts again from the top, where its
  checkpoints make the finished steps free and the suspend hands back the answer;
- a local run (CLI, tests) pauses in place, since there is no deployment to resubmit it.

The wait itself is `orchestration.admin_wait`'s (shared with the classification review). Nobody
answering within `timeout_seconds` ends the run Failed, naming the wait. A paused run's timeout
raises there; a suspended run has no process left to raise, so the automation
`splendor-fail-unanswered-oauth` (deployments/automations.yaml) fails it. The secret_id is a
credential: it is never a flow parameter (Prefect stores those in plain text), the resume form's answer
is deleted from the server as soon as Splendor has used or refused it, and an automation that already
knows it passes the name of a Secret block holding it.
"""

import asyncio

from prefect import get_run_logger
from prefect.artifacts import acreate_link_artifact
from prefect.blocks.system import Secret
from prefect.input import RunInput
from pydantic import Field

from splendor_api import OutcomeUnknown, SplendorClient, ValidationFailed
from splendor_api.models import CredentialStatus
from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import CredentialState
from splendor_flows.orchestration.admin_wait import answered, forget_answer, wait_for_admin
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.events import emit, remember_secrets
from splendor_flows.tasks.discover import ProviderDetails
from splendor_flows.tasks.provision import announce_ready, credential_status

STEP = "provision"


class OAuthApproval(RunInput):
    """What the admin pastes into the Prefect UI's resume form after approving consent."""

    secret_id: str = Field(min_length=1, max_length=512, description="secret_id from the consent redirect")


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


def _unanswered(scope: Scope, timeout_seconds: int) -> PermanentStepError:
    return PermanentStepError(
        STEP,
        scope.source_key,
        f"nobody approved the OAuth consent within {timeout_seconds} s",
        "start the pipeline again with the same sync_id to publish a new consent link",
    )


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
    raise _unanswered(scope, timeout_seconds)


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
        resumed = secret_id is None and await answered(pause_key)
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
                    approval = await wait_for_admin(
                        OAuthApproval,
                        pause_key=pause_key,
                        timeout_seconds=timeout_seconds,
                        unanswered=_unanswered(scope, timeout_seconds),
                    )
                    secret_id = approval.secret_id
                assert secret_id is not None
                remember_secrets([secret_id])
                try:
                    await _complete(client, scope, source_id, secret_id)
                finally:
                    if from_form:
                        await forget_answer(pause_key, "OAuth")
        status = await credential_status(client, source_id)
    if status != CredentialStatus.READY:
        raise PermanentStepError(
            STEP, scope.source_key, f"credentials are not ready (credential_status={status})"
        )
    get_run_logger().info("Credentials of source %s are ready", source_id)
    return announce_ready(
        scope, CredentialState(source_id=source_id, credential_status=status, provisioned=True)
    )
