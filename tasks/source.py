"""Step 2: make sure the source exists, exactly once. Reads the source list before creating."""

from typing import Any

from prefect import get_run_logger, task

from splendor_api import Conflict, OutcomeUnknown, SplendorClient, models
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.results import SourceRef
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import Scope, step_options
from splendor_flows.orchestration.events import emit
from splendor_flows.specs.source import SourceSpec
from splendor_flows.tasks.discover import ProviderDetails

# Config a later `apply` may change on an existing source (PUT /v1/admin/sources/{id}).
UPDATABLE = ("retention_days", "search_config", "semantic_config")


def create_request(spec: SourceSpec, provider: ProviderDetails) -> models.CreateAirbyteSource:
    return models.CreateAirbyteSource(
        provider_key=spec.provider_key,
        connector_key=spec.connector_key or spec.provider_key,
        connector_name=spec.connector_name or provider.name,
        source_key=spec.source_key,
        source_name=spec.source_name or spec.source_key,
        dataset_id=spec.dataset_id,
        bucket=spec.bucket,
        iam_role_arn=spec.iam_role_arn,
        prefix=spec.prefix,
        streams=spec.streams or provider.default_streams,
        schedule_type=spec.schedule_type,
        cron_expression=spec.schedule.cron if spec.schedule else None,
        retention_days=spec.retention_days,
        search_config=spec.search_config.model_dump(),
        semantic_config=spec.semantic_config.model_dump(),
    )


def config_drift(spec: SourceSpec, source: models.Source) -> dict[str, Any]:
    """Fields whose remote value differs from the spec (only those the API lets us update)."""
    wanted: dict[str, Any] = {
        "retention_days": spec.retention_days,
        "search_config": spec.search_config.model_dump(),
        "semantic_config": spec.semantic_config.model_dump(),
    }
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
    client: SplendorClient, scope: Scope, spec: SourceSpec, source: models.Source
) -> SourceRef:
    state = await client.get_airbyte_source(source.source_id)
    if state.airbyte.provider_key != spec.provider_key:
        raise PermanentStepError(
            "create",
            scope.source_key,
            f"source_key already used by source {source.source_id} with provider "
            f"'{state.airbyte.provider_key}', not '{spec.provider_key}'",
            "pick another source_key or delete the existing source",
        )
    drift = config_drift(spec, source)
    if drift:
        await client.update_source(source.source_id, models.SourceUpdate(**drift))
        get_run_logger().info("Updated %s on source %s", ", ".join(sorted(drift)), source.source_id)
    return SourceRef(
        source_id=source.source_id, source_key=spec.source_key, created=False, updated_fields=sorted(drift)
    )


@task(name="create", **step_options("create"))
async def ensure_source(scope: Scope, spec: SourceSpec, provider: ProviderDetails) -> SourceRef:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        existing = await client.find_source(spec.source_key)
        if existing is not None:
            logger.info("Source '%s' already exists (id %s): reusing it", spec.source_key, existing.source_id)
            return await _adopt_existing(client, scope, spec, existing)
        try:
            created = await client.create_airbyte_source(create_request(spec, provider))
        except Conflict as exc:
            if exc.code != "source_key_exists":
                raise
            # Created concurrently (another run, the console): adopt it rather than fail.
            found = await client.find_source(spec.source_key)
            if found is None:
                raise
            return await _adopt_existing(client, scope, spec, found)
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
    emit("splendor.source.created", scope, {"source_id": created_id, "provider_key": spec.provider_key})
    return SourceRef(source_id=created_id, source_key=spec.source_key, created=True)
