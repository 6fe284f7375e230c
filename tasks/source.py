"""Step 2: make sure the source exists, exactly once. Reads the source list before creating; a 409
`source_key_exists` resolves to the source it names."""

import logging
from typing import Any

from prefect import get_run_logger, task

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorClient, models
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import SourceRef
from splendor_flows.orchestration.checkpoint import step_options
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.specs.source import SourceSpec
from splendor_flows.tasks.discover import ProviderDetails

# What get_run_logger() returns inside a task; a plain logger in tests.
RunLogger = logging.Logger | logging.LoggerAdapter[Any]


def create_request(spec: SourceSpec, provider: ProviderDetails) -> models.CreateAirbyteSource:
    return models.CreateAirbyteSource(
        provider_key=spec.provider_key,
        source_definition_id=spec.source_definition_id,
        connector_key=spec.connector_key,
        connector_name=spec.connector_name,
        source_key=spec.source_key,
        source_name=spec.source_name,
        dataset_id=spec.dataset_id,
        bucket=spec.bucket,
        iam_role_arn=spec.iam_role_arn,
        prefix=spec.prefix,
        # Only streams known before the source exists: the spec's own are checked against discovery
        # once credentials are ready, and given to the connection (which sets what syncs). Sending an
        # unchecked name here would fail in Splendor instead of with the list of real streams.
        streams=provider.default_streams or None,
        # Splendor's scheduler only when the spec asks for it; otherwise the sync-source deployment's
        # schedule (made by `splendor-flows apply`) starts the syncs, never both.
        schedule_type=spec.schedule_type,
        cron_expression=spec.splendor_cron,
        retention_days=spec.retention_days,
        search_config=spec.search_config.model_dump(),
        semantic_config=spec.semantic_config.model_dump(),
    )


def config_drift(spec: SourceSpec, source: models.Source) -> dict[str, Any]:
    """Fields whose remote value differs from the spec (only those the API lets us update)."""
    wanted: dict[str, Any] = {"retention_days": spec.retention_days}
    if not spec.classifies:
        # A classified source's config is the approved classification's: an empty spec config must
        # not wipe it when the source is adopted again or a connectors file is applied.
        wanted["search_config"] = spec.search_config.model_dump()
        wanted["semantic_config"] = spec.semantic_config.model_dump()
    current = source.model_dump()
    return {k: v for k, v in wanted.items() if _normalise(current.get(k)) != _normalise(v)}


def _normalise(value: Any) -> Any:
    # The API fills defaults ({"text_fields": []}...), so empty containers compare equal to missing.
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if _normalise(v) not in (None, [], {})}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


async def _adopt_existing(
    client: SplendorClient,
    scope: Scope,
    spec: SourceSpec,
    source: models.Source,
    logger: RunLogger,
    state: models.AirbyteState | None = None,
) -> SourceRef:
    if state is None:
        state = (await client.get_airbyte_source(source.source_id)).airbyte
    if not spec.is_connector_of(state.provider_key, state.airbyte_source_definition_id):
        raise PermanentStepError(
            "create",
            scope.source_key,
            f"source_key already used by source {source.source_id} with provider "
            f"'{state.provider_key}' (definition {state.airbyte_source_definition_id}), "
            f"not {spec.connector_label}",
            "pick another source_key or delete the existing source",
        )
    drift = config_drift(spec, source)
    if drift:
        await client.update_source(source.source_id, models.SourceUpdate(**drift))
        logger.info("Updated %s on source %s", ", ".join(sorted(drift)), source.source_id)
    return SourceRef(
        source_id=source.source_id, source_key=spec.source_key, created=False, updated_fields=sorted(drift)
    )


async def _adopt_conflicting(
    client: SplendorClient, scope: Scope, spec: SourceSpec, conflict: Conflict, logger: RunLogger
) -> SourceRef:
    """The source a 409 `source_key_exists` names, read back by id and checked before it is adopted.

    The list read first can miss it (created concurrently by another run or the console, or a list
    the server cut short): the id in the 409 is the API's own answer, so it does not depend on the list.
    """
    if conflict.source_id is None:
        # Not the documented shape; the list is the only other way to find the source.
        found = await client.find_source(spec.source_key)
        if found is None:
            raise conflict
        return await _adopt_existing(client, scope, spec, found, logger)
    existing = await client.get_airbyte_source(conflict.source_id)
    if existing.source.source_key != spec.source_key:
        raise PermanentStepError(
            "create",
            scope.source_key,
            f"Splendor answered source_key_exists naming source {conflict.source_id}, whose key is "
            f"'{existing.source.source_key}'",
            "check the source in the Splendor console; nothing was adopted",
        )
    logger.info("Source '%s' already exists (id %s): reusing it", spec.source_key, conflict.source_id)
    return await _adopt_existing(client, scope, spec, existing.source, logger, existing.airbyte)


async def resolve_source(
    client: SplendorClient, scope: Scope, spec: SourceSpec, provider: ProviderDetails, logger: RunLogger
) -> SourceRef:
    """The source with the spec's key: the existing one (config drift updated) or a new one, never two."""
    existing = await client.find_source(spec.source_key)
    if existing is not None:
        logger.info("Source '%s' already exists (id %s): reusing it", spec.source_key, existing.source_id)
        return await _adopt_existing(client, scope, spec, existing, logger)
    try:
        created = await client.create_airbyte_source(create_request(spec, provider))
    except Conflict as exc:
        if exc.code != "source_key_exists":
            raise
        return await _adopt_conflicting(client, scope, spec, exc, logger)
    except OutcomeUnknown:
        # The create may have happened before the connection dropped: look before retrying.
        found = await client.find_source(spec.source_key)
        if found is None:
            raise
        logger.warning("Create outcome was unknown; the source exists (id %s)", found.source_id)
        created_id = found.source_id
    else:
        created_id = created.source.source_id
    logger.info("Created source '%s' (id %s)", spec.source_key, created_id)
    return SourceRef(source_id=created_id, source_key=spec.source_key, created=True)


@task(name="create", **step_options("create", inputs=("spec", "provider")))
async def ensure_source(scope: Scope, spec: SourceSpec, provider: ProviderDetails) -> SourceRef:
    async with open_client(scope.credentials_block) as client:
        ref = await resolve_source(client, scope, spec, provider, get_run_logger())
    emit(
        Event.SOURCE_CREATED if ref.created else Event.SOURCE_REUSED,
        scope,
        {
            "source_id": ref.source_id,
            "provider_key": spec.provider_key,
            "source_definition_id": spec.source_definition_id,
            "updated_fields": ref.updated_fields,
        },
    )
    return ref


async def check_checkpointed_source(scope: Scope, spec: SourceSpec, source: SourceRef) -> None:
    """A source id that came from a checkpoint must still be this spec's source in this API before
    any step acts on it: a source deleted and re-created since, or an id read back from storage that
    another pipeline wrote, would otherwise be provisioned with these credentials."""
    fix = "start again with a new sync_id (the finished steps are re-read from Splendor, not repeated)"
    async with open_client(scope.credentials_block, step="create", source_key=scope.source_key) as client:
        try:
            state = await client.get_airbyte_source(source.source_id)
        except NotFound:
            raise PermanentStepError(
                "create",
                scope.source_key,
                f"the checkpoint names source {source.source_id}, which no longer exists",
                fix,
            ) from None
    found_key, found_provider = state.source.source_key, state.airbyte.provider_key
    found_definition = state.airbyte.airbyte_source_definition_id
    # A source that does not report the id the spec names is not evidence of another connector.
    reported = (found_definition if spec.source_definition_id else found_provider) is not None
    if found_key != spec.source_key or (
        reported and not spec.is_connector_of(found_provider, found_definition)
    ):
        raise PermanentStepError(
            "create",
            scope.source_key,
            f"the checkpoint names source {source.source_id}, but Splendor has it as '{found_key}' "
            f"(provider {found_provider}, definition {found_definition}), not '{spec.source_key}' "
            f"({spec.connector_label})",
            fix,
        )
