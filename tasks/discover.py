"""Step 1: discover the provider (auth mode, credential spec, streams). Reads only."""

from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel

from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import Scope, step_options


class ProviderDetails(BaseModel):
    provider_key: str
    auth_mode: str
    oauth_mode: str
    default_streams: list[str]
    connection_specification: dict[str, Any]


@task(name="discover", **step_options("discover", inputs=("provider_key",)))
async def discover_provider(scope: Scope, provider_key: str) -> ProviderDetails:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        providers = await client.list_providers()
        match = next((p for p in providers if p.provider_key == provider_key), None)
        if match is None:
            known = ", ".join(sorted(p.provider_key for p in providers)) or "none"
            raise PermanentStepError(
                "discover",
                scope.source_key,
                f"unknown provider_key '{provider_key}'",
                f"choose one of: {known}",
            )
        discovery = await client.discover_provider(provider_key)
    if discovery.status in ("missing_source_definition", "airbyte_oauth_unavailable"):
        raise PermanentStepError(
            "discover",
            scope.source_key,
            f"provider '{provider_key}' cannot be connected now (status {discovery.status})",
            discovery.error_message or "ask Splendor support to enable the connector",
        )
    logger.info(
        "Provider %s: auth_mode=%s oauth_mode=%s streams=%s",
        provider_key,
        discovery.auth_mode,
        discovery.oauth_mode,
        ", ".join(match.default_streams),
    )
    return ProviderDetails(
        provider_key=provider_key,
        auth_mode=discovery.auth_mode,
        oauth_mode=discovery.oauth_mode,
        default_streams=list(match.default_streams),
        connection_specification=dict(discovery.connection_specification or {}),
    )
