"""Step 1: discover the connector (auth mode, credential spec, default streams), and later the streams
it really has. Reads only."""

from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel

from splendor_api import NotFound, SplendorClient, models
from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.engine.scope import Step
from splendor_flows.orchestration.checkpoint import retry_only_transient, step_options
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.specs.source import SourceSpec


class ProviderDetails(BaseModel):
    """A curated provider (provider_key set) or an Airbyte catalog connector (source_definition_id set)."""

    provider_key: str | None
    source_definition_id: str | None = None
    name: str = ""
    auth_mode: str
    oauth_mode: str
    # Empty for a catalog connector: the catalog names no defaults, Splendor picks them at creation.
    default_streams: list[str]
    connection_specification: dict[str, Any]

    @property
    def label(self) -> str:
        if self.provider_key is not None:
            return self.provider_key
        return f"{self.name} ({self.source_definition_id})"


async def lookup_provider(client: SplendorClient, provider_key: str, source_key: str) -> ProviderDetails:
    """A curated provider by key, or a PermanentStepError naming the known ones."""
    providers = await client.list_providers()
    match = next((p for p in providers if p.provider_key == provider_key), None)
    if match is None:
        known = ", ".join(sorted(p.provider_key for p in providers)) or "none"
        raise PermanentStepError(
            "discover", source_key, f"unknown provider_key '{provider_key}'", f"choose one of: {known}"
        )
    discovery = await client.discover_provider(provider_key)
    if discovery.status in ("missing_source_definition", "airbyte_oauth_unavailable"):
        raise PermanentStepError(
            "discover",
            source_key,
            f"provider '{provider_key}' cannot be connected now (status {discovery.status})",
            discovery.error_message or "ask Splendor support to enable the connector",
        )
    return ProviderDetails(
        provider_key=provider_key,
        source_definition_id=discovery.airbyte_source_definition_id,
        name=match.name,
        auth_mode=discovery.auth_mode,
        oauth_mode=discovery.oauth_mode,
        default_streams=list(match.default_streams),
        connection_specification=dict(discovery.connection_specification or {}),
    )


async def lookup_definition(
    client: SplendorClient, source_definition_id: str, source_key: str
) -> ProviderDetails:
    """An Airbyte catalog connector by definition id, or a PermanentStepError saying how to find one."""
    try:
        discovery = await client.discover_catalog_definition(source_definition_id)
    except NotFound:
        raise PermanentStepError(
            "discover",
            source_key,
            f"unknown source_definition_id '{source_definition_id}'",
            "find one with: splendor-flows catalog search TEXT",
        ) from None
    return ProviderDetails(
        provider_key=None,
        source_definition_id=discovery.source_definition_id,
        name=discovery.source_definition_name,
        # The catalog reports only Airbyte's OAuth: a connector without it takes a credential object.
        auth_mode=models.AuthMode.OAUTH if discovery.oauth_mode == "airbyte" else models.AuthMode.API_KEY,
        oauth_mode=discovery.oauth_mode,
        default_streams=[],
        connection_specification=dict(discovery.connection_specification or {}),
    )


# The key covers both ids: a spec switched from a provider to a catalog connector re-discovers.
@task(name="discover", **step_options("discover", inputs=("provider_key", "source_definition_id")))
async def discover_provider(
    scope: Scope, provider_key: str | None, source_definition_id: str | None = None
) -> ProviderDetails:
    async with open_client(scope.credentials_block) as client:
        if provider_key is not None:
            details = await lookup_provider(client, provider_key, scope.source_key)
        elif source_definition_id is not None:
            details = await lookup_definition(client, source_definition_id, scope.source_key)
        else:  # the spec model refuses this; a direct task call could still do it
            raise SpecError(scope.source_key, "give provider_key or source_definition_id")
    get_run_logger().info(
        "Connector %s: auth_mode=%s oauth_mode=%s default streams=%s",
        details.label,
        details.auth_mode,
        details.oauth_mode,
        ", ".join(details.default_streams) or "(chosen by Splendor)",
    )
    return details


@task(
    name="discover-streams", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_only_transient
)
async def discover_streams(scope: Scope, source_id: int) -> list[models.StreamSchema]:
    """The streams and fields the connector reports for this source (needs ready credentials).

    Not checkpointed: a read, and the connector's catalog may change between runs. Its failures read
    "[connect] ...": the streams are read for the connection, and operators know the pipeline's steps,
    not the names of the tasks inside them.
    """
    async with open_client(scope.credentials_block, step=Step.CONNECT, source_key=scope.source_key) as client:
        return await client.discover_schema(source_id)


def check_streams(spec: SourceSpec, streams: list[models.StreamSchema]) -> None:
    """The spec's streams must be ones the connector reports (default or not), else a permanent error
    naming each unknown stream and listing the real ones.

    Runs once credentials are ready (discovery needs them), so the source exists by then: the error
    says so rather than SpecError's "nothing was changed".
    """
    known = [s.name for s in streams]
    unknown = sorted(set(spec.streams or []) - set(known))
    if unknown:
        raise PermanentStepError(
            "connect",
            spec.source_key,
            f"streams: unknown stream(s) {', '.join(unknown)} for {spec.connector_label}; "
            f"the connector has: {', '.join(sorted(known)) or 'none'}",
            "fix streams in the spec and run again with the same sync_id (the source exists, "
            "with no connection yet)",
        )
