"""Step 3: credentials. API-key providers are provisioned from a Secret block; OAuth providers
publish a consent link and wait for an admin (or take a `secret_id` given up front)."""

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import httpx
from prefect import get_run_logger, task
from prefect.artifacts import acreate_link_artifact
from prefect.client.orchestration import get_client
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput, keyset_from_paused_state
from prefect.runtime import flow_run
from prefect.states import Paused
from pydantic import Field

from splendor_api import OutcomeUnknown, SplendorClient, ValidationFailed
from splendor_api.models import AuthMode, CredentialStatus
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.results import CredentialState
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import Scope, step_options
from splendor_flows.orchestration.connector_secrets import check_credentials, load_connector_credentials
from splendor_flows.tasks.discover import ProviderDetails


class OAuthApproval(RunInput):
    """What the admin pastes into the Prefect UI's resume form after approving consent."""

    secret_id: str = Field(min_length=1, max_length=512, description="secret_id from the consent redirect")


async def _status(client: SplendorClient, source_id: int) -> str:
    return (await client.get_airbyte_source(source_id)).airbyte.credential_status


async def _provision_api_key(
    client: SplendorClient, scope: Scope, source_id: int, provider: ProviderDetails, secret_block: str | None
) -> None:
    config = await load_connector_credentials(scope.source_key, secret_block)
    check_credentials(scope.source_key, config, provider.connection_specification)
    try:
        result = await client.provision(source_id, config)
    except OutcomeUnknown:
        if await _status(client, source_id) == CredentialStatus.READY:
            return
        raise
    except ValidationFailed as exc:
        fields = "; ".join(f"{loc}: {msg}" for loc, msg in exc.field_errors) or "see the connector spec"
        raise PermanentStepError(
            "provision",
            scope.source_key,
            f"Splendor rejected the credentials ({fields})",
            f"update the Secret block '{secret_block}'",
        ) from None
    if result.airbyte.credential_status == CredentialStatus.FAILED:
        raise PermanentStepError(
            "provision",
            scope.source_key,
            "the provider rejected the credentials (credential_status=failed)",
            f"update the Secret block '{secret_block}' and resume",
        )


async def _publish_consent(scope: Scope, consent_url: str) -> None:
    get_run_logger().info("Approve access for source '%s' at: %s", scope.source_key, consent_url)
    await acreate_link_artifact(
        link=consent_url,
        link_text=f"Approve {scope.source_key} access",
        key="splendor-oauth-consent",
        description="Open, approve, then paste the secret_id into this paused run's resume form.",
    )


async def _forget_approval(pause_key: str) -> None:
    """Delete the resume form's answer from the Prefect server.

    Prefect keeps what the admin typed into the resume form as plain flow-run input, readable by anyone
    with API access. Once Splendor has used (or refused) the secret_id, nothing needs it any more.
    """
    run_id = flow_run.get_id()
    if run_id is None:
        return
    # The same key Prefect's pause derived for this pause (prefect.input.keyset_from_paused_state).
    key = keyset_from_paused_state(Paused(pause_key=pause_key))["response"]
    try:
        async with get_client() as client:
            await client.delete_flow_run_input(UUID(run_id), key)
    except httpx.HTTPError as exc:
        # Credentials are ready by now: a failed clean-up must not fail the pipeline, but must be seen.
        get_run_logger().warning(
            "Could not delete the OAuth resume input %r of this flow run (%s); delete it by hand",
            key,
            type(exc).__name__,
        )


async def _oauth(
    client: SplendorClient,
    scope: Scope,
    source_id: int,
    provider: ProviderDetails,
    secret_id: str | None,
    timeout_seconds: int,
) -> None:
    status = await _status(client, source_id)
    if status != CredentialStatus.READY and not (status == CredentialStatus.PENDING_OAUTH and secret_id):
        result = await client.provision(source_id, {})
        status = result.airbyte.credential_status
        if status != CredentialStatus.READY and not secret_id:
            if not result.consent_url:
                raise PermanentStepError(
                    "provision", scope.source_key, "OAuth provision returned no consent_url"
                )
            await _publish_consent(scope, result.consent_url)
    if status == CredentialStatus.READY:
        return
    if provider.oauth_mode == "splendor":
        # Splendor runs this OAuth itself: wait for its callback to flip the status.
        await _wait_ready(client, scope, source_id, timeout_seconds)
        return
    pause_key: str | None = None
    if not secret_id:
        pause_key = f"oauth-{source_id}"
        approval = await apause_flow_run(
            wait_for_input=OAuthApproval, timeout=timeout_seconds, poll_interval=2, key=pause_key
        )
        secret_id = approval.secret_id
    try:
        await client.complete_oauth(source_id, secret_id)
    except OutcomeUnknown:
        # Kept on the server while unsure: a retry of this step reads the same answer back.
        if await _status(client, source_id) != CredentialStatus.READY:
            raise
    except ValidationFailed:
        if pause_key:
            await _forget_approval(pause_key)
        raise PermanentStepError(
            "provision",
            scope.source_key,
            "Splendor did not accept the secret_id (unknown or already used)",
            "approve consent again and resume with the new secret_id",
        ) from None
    if pause_key:
        await _forget_approval(pause_key)


async def _wait_ready(client: SplendorClient, scope: Scope, source_id: int, timeout_seconds: int) -> None:
    started = datetime.now(UTC)
    delay = 1.0
    while (datetime.now(UTC) - started).total_seconds() < timeout_seconds:
        status = await _status(client, source_id)
        if status == CredentialStatus.READY:
            return
        if status == CredentialStatus.FAILED:
            raise PermanentStepError("provision", scope.source_key, "OAuth authorisation failed")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    raise PermanentStepError(
        "provision",
        scope.source_key,
        f"nobody approved the consent within {timeout_seconds} s",
        "approve it, then resume this run",
    )


@task(name="provision", **step_options("provision", inputs=("source_id", "provider", "credentials_secret")))
async def ensure_credentials(
    scope: Scope,
    source_id: int,
    provider: ProviderDetails,
    credentials_secret: str | None = None,
    secret_id: str | None = None,
    oauth_timeout_seconds: int = 3600,
    force: bool = False,
) -> CredentialState:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        status = await _status(client, source_id)
        if status == CredentialStatus.READY and not force:
            logger.info("Credentials of source %s are already ready", source_id)
            return CredentialState(source_id=source_id, credential_status=status, provisioned=False)
        if provider.auth_mode == AuthMode.OAUTH:
            await _oauth(client, scope, source_id, provider, secret_id, oauth_timeout_seconds)
        else:
            await _provision_api_key(client, scope, source_id, provider, credentials_secret)
        status = await _status(client, source_id)
    if status != CredentialStatus.READY:
        raise PermanentStepError(
            "provision", scope.source_key, f"credentials are not ready (credential_status={status})"
        )
    logger.info("Credentials of source %s are ready", source_id)
    return CredentialState(source_id=source_id, credential_status=status, provisioned=True)
