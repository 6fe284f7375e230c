"""connect_source: onboard one Airbyte-backed source end to end, resumable at every step.

No `from __future__ import annotations` here: served deployments must resolve the pydantic
parameter types at runtime.
"""

from typing import Annotated, ParamSpec, TypeVar

from prefect import Task, flow, get_run_logger
from pydantic import Field

from splendor_api.models import AuthMode, CredentialStatus
from splendor_flows.engine.polling import PollOptions
from splendor_flows.human_waits.classification_review import classify_source
from splendor_flows.human_waits.oauth import connect_oauth
from splendor_flows.orchestration.connector_secrets import check_credentials, load_connector_credentials
from splendor_flows.orchestration.failure_masking import masks_failures
from splendor_flows.orchestration.prefect_compat import call_task
from splendor_flows.orchestration.source_lock import ensure_source_limits
from splendor_flows.source_pipeline import (
    MAX_TOTAL_ATTEMPTS,
    PipelineSummary,
    outcome_steps,
    publish_summary,
    resolve_scope,
    summarise,
    sync_and_ingest_as_tasks,
)
from splendor_flows.specs.source import SourceSpec
from splendor_flows.tasks.connection import ensure_connection
from splendor_flows.tasks.discover import check_streams, discover_provider, discover_streams
from splendor_flows.tasks.provision import ensure_credentials
from splendor_flows.tasks.source import check_checkpointed_source, ensure_source

P = ParamSpec("P")
R = TypeVar("R")


def refreshed(task: Task[P, R], force: bool) -> Task[P, R]:
    """With `force` the step runs and overwrites its checkpoint; otherwise its cache settings hold."""
    return task.with_options(refresh_cache=True) if force else task


@flow(name="connect-source", log_prints=False)
@masks_failures
async def connect_source(
    spec: SourceSpec,
    sync_id: str | None = None,
    force: bool = False,
    oauth_secret_block: str | None = None,
    credentials_block: str | None = None,
    max_sync_attempts: Annotated[int, Field(ge=1, le=MAX_TOTAL_ATTEMPTS)] = 3,
    poll: PollOptions = PollOptions(),
    sync: bool = True,
    wait_for_ingest: bool = True,
) -> PipelineSummary:
    """Discover → create source → credentials (API key or OAuth) → classify fields → connection →
    sync → ingest.

    Args:
        spec: the source to connect.
        sync_id: leave empty for a fresh pipeline; pass a failed run's sync_id to resume it.
        force: re-run every step even when a checkpoint exists.
        oauth_secret_block: name of a Secret block holding an OAuth secret_id obtained beforehand; skips
            the wait for approval (the secret_id itself is never a parameter: those are stored in plain
            text).
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        max_sync_attempts: new sync runs this flow run may start when runs fail.
        poll: how to poll the sync and ingest runs.
        sync: run the first sync after connecting.
        wait_for_ingest: wait until ingestion is `ready`.
    """
    logger = get_run_logger()
    scope = await resolve_scope(spec.source_key, sync_id, credentials_block, force=force)
    if spec.prefect_schedule is not None:
        # Onboarding leaves the source manual in Splendor; its schedule lives on the sync-source
        # deployment, which connectors-as-code manages (one place creates, updates and removes it).
        logger.warning(
            "connect-source schedules nothing: the spec's schedule ('%s' %s) is added to the sync-source "
            "deployment by `splendor-flows apply` (which does so after this onboarding when it started it)",
            spec.prefect_schedule.cron,
            spec.prefect_schedule.timezone,
        )

    provider = await refreshed(discover_provider, force)(scope, spec.provider_key, spec.source_definition_id)
    if provider.auth_mode == AuthMode.API_KEY:
        # Check the credentials locally before the first mutating call.
        credentials = await load_connector_credentials(spec.source_key, spec.credentials_secret)
        check_credentials(spec.source_key, credentials, provider.connection_specification)
        del credentials

    source, from_checkpoint = await call_task(refreshed(ensure_source, force), scope, spec, provider)
    if from_checkpoint:
        await check_checkpointed_source(scope, spec, source)
    steps = [
        {
            "step": "discover",
            "result": f"{provider.label} ({provider.auth_mode}, oauth {provider.oauth_mode})",
        },
        {
            "step": "create",
            "result": f"source {source.source_id} ({'created' if source.created else 'existing'})",
        },
    ]
    creds = await refreshed(ensure_credentials, force)(
        scope, source.source_id, provider, spec.credentials_secret, force
    )
    if creds.credential_status != CredentialStatus.READY:  # OAuth: the flow run waits for consent
        creds = await connect_oauth(
            scope,
            source.source_id,
            provider,
            timeout_seconds=spec.oauth.timeout_seconds,
            secret_block=oauth_secret_block,
        )
    steps.append({"step": "provision", "result": f"credentials {creds.credential_status}"})
    if spec.streams or spec.classifies:
        # The connector's streams (default or not) and their fields are known only from
        # discover-schema, which needs ready credentials: no discovery call lists them before a source
        # exists. So the stream check and the classification sit here, after provisioning and before
        # the connection (the call that fixes the synced streams), as Splendor's guide orders them.
        discovered = await discover_streams(scope, source.source_id)
        if spec.streams:
            check_streams(spec, discovered)
        if spec.classifies:
            classified = await classify_source(
                scope, spec, source.source_id, provider.default_streams, discovered, force=force
            )
            steps.append({"step": "classify", "result": classified})
    if spec.classification != "off" and not spec.classifies:
        # The create step applied the spec's own config: it wins over any proposal.
        steps.append({"step": "classify", "result": "search / semantic config from the spec"})
    connection = await refreshed(ensure_connection, force)(scope, source.source_id, spec.streams)
    steps.append({"step": "connect", "result": f"connection {connection.connection_id}"})
    # The source's slot (source_lock), made now rather than by its first sync.
    await ensure_source_limits([scope])

    outcome = None
    if sync:
        outcome = await sync_and_ingest_as_tasks(
            scope,
            source.source_id,
            trigger="manual",
            max_sync_attempts=max_sync_attempts,
            poll=poll,
            wait_ready=wait_for_ingest,
        )
        steps.extend(outcome_steps(outcome))
    summary = summarise(scope, source.source_id, outcome, steps)
    await publish_summary(summary)
    logger.info("Source %s connected: %s", spec.source_key, summary.status)
    return summary
