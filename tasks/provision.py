"""Step 3: credentials. API-key providers are provisioned here from a Secret block.

OAuth providers need an admin's consent, and waiting for a person belongs to the flow run, not to a
task (a task that pauses and times out gets retried, publishes a second consent link, and cannot
pause again): this step only says whether their credentials are ready; `human_waits/oauth.py` does the rest.
"""

from typing import Any

from prefect import get_run_logger, task

from splendor_api import OutcomeUnknown, SplendorClient, ValidationFailed
from splendor_api.models import AuthMode, CredentialStatus
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import CredentialState
from splendor_flows.orchestration import fingerprints
from splendor_flows.orchestration.checkpoint import step_options
from splendor_flows.orchestration.connector_secrets import check_credentials, load_connector_credentials
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.tasks.discover import ProviderDetails


async def credential_status(client: SplendorClient, source_id: int) -> str:
    return (await client.get_airbyte_source(source_id)).airbyte.credential_status


async def _provision_api_key(
    client: SplendorClient, scope: Scope, source_id: int, config: dict[str, Any], secret_block: str | None
) -> None:
    try:
        result = await client.provision(source_id, config)
    except OutcomeUnknown:
        if await credential_status(client, source_id) == CredentialStatus.READY:
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


def announce_ready(scope: Scope, state: CredentialState) -> CredentialState:
    """Publish `splendor.credentials.ready` for a step that ends with ready credentials, whether it
    provisioned them now or found them ready (the OAuth wait's automation expects it either way)."""
    emit(
        Event.CREDENTIALS_READY,
        scope,
        {
            "source_id": state.source_id,
            "credential_status": state.credential_status,
            "provisioned": state.provisioned,
        },
    )
    return state


@task(name="provision", **step_options("provision", inputs=("source_id", "provider", "credentials_secret")))
async def ensure_credentials(
    scope: Scope,
    source_id: int,
    provider: ProviderDetails,
    credentials_secret: str | None = None,
    force: bool = False,
) -> CredentialState:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        status = await credential_status(client, source_id)
        if provider.auth_mode == AuthMode.OAUTH:
            # Not ready: consent is the flow run's business (human_waits/oauth.py), which announces it.
            state = CredentialState(source_id=source_id, credential_status=status, provisioned=False)
            return announce_ready(scope, state) if status == CredentialStatus.READY else state
        config = await load_connector_credentials(scope.source_key, credentials_secret)
        check_credentials(scope.source_key, config, provider.connection_specification)
        # Splendor never shows credentials back: whether the ones it holds are the spec's is known only
        # from the fingerprint of what was last submitted. Same credentials: nothing to do. Other ones
        # (an edited Secret block or credentials_secret) or no record: submit them, so the edit takes effect.
        applied = await fingerprints.read_one(scope.tenant, scope.source_key)
        if (
            status == CredentialStatus.READY
            and not force
            and applied
            and fingerprints.matches(applied, config)
        ):
            logger.info("Credentials of source %s are already ready", source_id)
            return announce_ready(
                scope, CredentialState(source_id=source_id, credential_status=status, provisioned=False)
            )
        await _provision_api_key(client, scope, source_id, config, credentials_secret)
        await fingerprints.save(
            scope.tenant, scope.source_key, fingerprints.new_fingerprint(config, credentials_secret or "")
        )
        status = await credential_status(client, source_id)
    if status != CredentialStatus.READY:
        raise PermanentStepError(
            "provision", scope.source_key, f"credentials are not ready (credential_status={status})"
        )
    logger.info("Credentials of source %s are ready", source_id)
    return announce_ready(
        scope, CredentialState(source_id=source_id, credential_status=status, provisioned=True)
    )
