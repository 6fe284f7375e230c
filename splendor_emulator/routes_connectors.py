"""Connectors & Airbyte endpoints (§0, §4). All of them require an admin role."""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from splendor_emulator import connectors
from splendor_emulator.auth import Admin, runtime_of
from splendor_emulator.errors import not_found
from splendor_emulator.models import (
    AirbyteSourceEnvelope,
    AirbyteSourceResult,
    CatalogDiscovery,
    CatalogList,
    CreateAirbyteSourceRequest,
    CreateConnectionRequest,
    DiscoverSchemaResult,
    EnqueueIngestRequest,
    EnqueueIngestResult,
    OAuthCompleteRequest,
    ProviderDiscovery,
    ProviderItem,
    ProviderList,
    ProvisionRequest,
    ProvisionResult,
    RunEnvelope,
    RunList,
    SourceDefinitionItem,
    SyncRequest,
)

router = APIRouter(tags=["Connectors & Airbyte"])

SourceId = Annotated[int, Path(description="Splendor source id")]
RunId = Annotated[int, Path(description="Connector run id")]


def _workspace(tenant: str) -> str:
    return f"ws_{tenant}"


@router.get("/v1/admin/connector-providers", response_model=ProviderList, summary="List connector providers")
async def list_providers(request: Request, caller: Admin) -> ProviderList:
    rt = runtime_of(request)
    return ProviderList(
        providers=[
            ProviderItem(
                provider_key=p.provider_key,
                name=p.name,
                auth_mode=p.auth_mode,
                oauth_mode=p.oauth_mode,
                airbyte_source_definition_id=p.source_definition_id,
                default_streams=p.default_streams,
            )
            for p in rt.providers()
            if p.curated
        ]
    )


@router.post(
    "/v1/admin/connector-providers/{provider_key}/airbyte-discovery",
    response_model=ProviderDiscovery,
    summary="Discover an Airbyte schema",
)
async def discover_provider(request: Request, caller: Admin, provider_key: str) -> ProviderDiscovery:
    provider = runtime_of(request).provider(provider_key)
    if provider is None:
        raise not_found(f"Provider {provider_key}")
    return ProviderDiscovery(
        provider_key=provider.provider_key,
        tenant_id=caller.tenant_id,
        airbyte_workspace_id=_workspace(caller.tenant_id),
        airbyte_source_definition_id=provider.source_definition_id,
        airbyte_source_definition_name=provider.name,
        docker_repository=provider.docker_repository,
        docker_image_tag=provider.docker_image_tag,
        auth_mode=provider.auth_mode,
        oauth_mode=provider.oauth_mode,
        supports_airbyte_oauth=provider.oauth_mode == "airbyte",
        connection_specification=provider.connection_specification,
        oauth_input_configuration=provider.oauth_input_configuration,
        status="api_key" if provider.auth_mode == "api_key" else "ready",
        error_message=None,
    )


@router.get("/v1/admin/airbyte-catalog", response_model=CatalogList, summary="Search the Airbyte catalog")
async def search_catalog(
    request: Request, caller: Admin, q: Annotated[str | None, Query(max_length=255)] = None
) -> CatalogList:
    needle = (q or "").strip().lower()
    return CatalogList(
        source_definitions=[
            SourceDefinitionItem(
                source_definition_id=p.source_definition_id,
                name=p.name,
                docker_repository=p.docker_repository,
                docker_image_tag=p.docker_image_tag,
            )
            for p in runtime_of(request).providers()
            if not needle or needle in p.name.lower() or needle in p.docker_repository.lower()
        ]
    )


@router.post(
    "/v1/admin/airbyte-catalog/{source_definition_id}/discover",
    response_model=CatalogDiscovery,
    summary="Discover an Airbyte connector's capabilities",
)
async def discover_definition(request: Request, caller: Admin, source_definition_id: str) -> CatalogDiscovery:
    provider = runtime_of(request).definition(source_definition_id)
    if provider is None:
        raise not_found("Source definition")
    # Catalog discovery only knows Airbyte's view: Splendor-run OAuth shows up as "none" here.
    oauth_mode = "airbyte" if provider.oauth_mode == "airbyte" else "none"
    return CatalogDiscovery(
        tenant_id=caller.tenant_id,
        airbyte_workspace_id=_workspace(caller.tenant_id),
        source_definition_id=provider.source_definition_id,
        source_definition_name=provider.name,
        docker_repository=provider.docker_repository,
        docker_image_tag=provider.docker_image_tag,
        connection_specification=provider.connection_specification,
        oauth_input_configuration=provider.oauth_input_configuration,
        oauth_mode=oauth_mode,
        supports_airbyte_oauth=oauth_mode == "airbyte",
    )


@router.post(
    "/v1/admin/airbyte-sources", response_model=AirbyteSourceEnvelope, summary="Create an Airbyte source"
)
async def create_airbyte_source(
    request: Request, caller: Admin, body: CreateAirbyteSourceRequest
) -> AirbyteSourceEnvelope:
    return connectors.create_source(runtime_of(request), caller.tenant_id, body)


@router.get(
    "/v1/admin/airbyte-sources/{source_id}",
    response_model=AirbyteSourceEnvelope,
    summary="Get an Airbyte source",
)
async def get_airbyte_source(request: Request, caller: Admin, source_id: SourceId) -> AirbyteSourceEnvelope:
    rt = runtime_of(request)
    return connectors.envelope(rt, rt.airbyte_source(caller.tenant_id, source_id))


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/provision",
    response_model=ProvisionResult,
    summary="Provision an Airbyte source",
)
async def provision_source(
    request: Request,
    caller: Admin,
    source_id: SourceId,
    body: Annotated[ProvisionRequest | None, Body()] = None,
) -> ProvisionResult:
    configuration = body.source_configuration if body is not None else {}
    return connectors.provision(
        runtime_of(request), caller.tenant_id, source_id, configuration, str(request.base_url)
    )


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/oauth/complete",
    response_model=AirbyteSourceResult,
    summary="Complete Airbyte OAuth",
)
async def complete_oauth(
    request: Request, caller: Admin, source_id: SourceId, body: OAuthCompleteRequest
) -> AirbyteSourceResult:
    return connectors.complete_oauth(runtime_of(request), caller.tenant_id, source_id, body.secret_id)


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/discover-schema",
    response_model=DiscoverSchemaResult,
    summary="Discover the source's streams and fields",
)
async def discover_schema(request: Request, caller: Admin, source_id: SourceId) -> DiscoverSchemaResult:
    return connectors.discover_schema(runtime_of(request), caller.tenant_id, source_id)


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/connection",
    response_model=AirbyteSourceResult,
    summary="Create an Airbyte connection",
)
async def create_connection(
    request: Request,
    caller: Admin,
    source_id: SourceId,
    body: Annotated[CreateConnectionRequest | None, Body()] = None,
) -> AirbyteSourceResult:
    return connectors.create_connection(runtime_of(request), caller.tenant_id, source_id, body)


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/sync", response_model=RunEnvelope, summary="Start an Airbyte sync"
)
async def start_sync(
    request: Request, caller: Admin, source_id: SourceId, body: Annotated[SyncRequest | None, Body()] = None
) -> RunEnvelope:
    return connectors.start_sync(runtime_of(request), caller.tenant_id, source_id, body)


@router.post(
    "/v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
    response_model=EnqueueIngestResult,
    summary="Hand a landed run off to ingestion",
)
async def enqueue_ingest(
    request: Request,
    caller: Admin,
    source_id: SourceId,
    body: Annotated[EnqueueIngestRequest | None, Body()] = None,
) -> EnqueueIngestResult:
    run_id = body.run_id if body is not None else None
    return connectors.enqueue_ingest(runtime_of(request), caller.tenant_id, source_id, run_id)


@router.post(
    "/v1/admin/airbyte-runs/{run_id}/refresh", response_model=RunEnvelope, summary="Refresh an Airbyte run"
)
async def refresh_run(request: Request, caller: Admin, run_id: RunId) -> RunEnvelope:
    return connectors.read_run(runtime_of(request), caller.tenant_id, run_id)


@router.get(
    "/v1/admin/airbyte-runs/{run_id}", response_model=RunEnvelope, summary="Get an Airbyte run [ASSUMED]"
)
async def get_run(request: Request, caller: Admin, run_id: RunId) -> RunEnvelope:
    return connectors.read_run(runtime_of(request), caller.tenant_id, run_id)


@router.get(
    "/v1/admin/airbyte-sources/{source_id}/runs",
    response_model=RunList,
    summary="List Airbyte runs of a source, newest first [ASSUMED]",
)
async def list_runs(
    request: Request,
    caller: Admin,
    source_id: SourceId,
    limit: Annotated[int, Query(ge=1, le=100, description="Most recent runs to return")] = 20,
) -> RunList:
    return connectors.list_runs(runtime_of(request), caller.tenant_id, source_id, limit)


@router.post(
    "/v1/admin/airbyte-runs/{run_id}/cancel",
    response_model=RunEnvelope,
    summary="Cancel an Airbyte run [ASSUMED]",
)
async def cancel_run(request: Request, caller: Admin, run_id: RunId) -> RunEnvelope:
    return connectors.cancel_run(runtime_of(request), caller.tenant_id, run_id)
