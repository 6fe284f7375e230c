"""The emulator's own schemas, written independently of the client, accept the same documented examples.

Two readings of one contract: if the client's models and the emulator's models both parse every example
payload of the contract, a field one of them got wrong shows up here rather than as a puzzling flow failure.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from splendor_emulator import models as emu

FIXTURES = Path(__file__).parent / "fixtures"

# fixture file → the emulator model that describes the same payload
EMULATOR_MODELS: dict[str, type[BaseModel]] = {
    "source_item.json": emu.SourceItem,
    "connector_item.json": emu.ConnectorItem,
    "airbyte_source_state.json": emu.AirbyteSourceState,
    "connector_run_item.json": emu.ConnectorRunItem,
    "ingest_run_item.json": emu.IngestRunItem,
    "create_airbyte_source_request.json": emu.CreateAirbyteSourceRequest,
    "create_airbyte_source_response.json": emu.AirbyteSourceEnvelope,
    "get_airbyte_source_response.json": emu.AirbyteSourceEnvelope,
    "provision_request.json": emu.ProvisionRequest,
    "provision_response.json": emu.ProvisionResult,
    "provision_oauth_response.json": emu.ProvisionResult,
    "complete_oauth_request.json": emu.OAuthCompleteRequest,
    "complete_oauth_response.json": emu.AirbyteSourceResult,
    "create_connection_request.json": emu.CreateConnectionRequest,
    "create_connection_response.json": emu.AirbyteSourceResult,
    "start_sync_request.json": emu.SyncRequest,
    "start_sync_response.json": emu.RunEnvelope,
    "start_sync_pending_response.json": emu.RunEnvelope,
    "refresh_run_response.json": emu.RunEnvelope,
    "get_run_response.json": emu.RunEnvelope,
    "list_runs_response.json": emu.RunList,
    "enqueue_ingest_request.json": emu.EnqueueIngestRequest,
    "enqueue_ingest_response.json": emu.EnqueueIngestResult,
    "list_sources_response.json": emu.SourceList,
    "list_ingest_runs_response.json": emu.IngestRunList,
    "get_ingest_run_response.json": emu.IngestRunItem,
    "list_providers_response.json": emu.ProviderList,
    "provider_discovery_response.json": emu.ProviderDiscovery,
    "airbyte_catalog_response.json": emu.CatalogList,
    "catalog_discover_response.json": emu.CatalogDiscovery,
    "discover_schema_response.json": emu.DiscoverSchemaResult,
    "update_source_request.json": emu.UpdateSourceRequest,
    "update_source_response.json": emu.SourceItem,
    "create_hosted_source_request.json": emu.CreateHostedSourceRequest,
    "upload_initiate_response.json": emu.UploadSession,
    "upload_sign_parts_response.json": emu.SignPartsResult,
    "upload_complete_response.json": emu.UploadCompleted,
    "upload_readiness_response.json": emu.HostedUploadReadiness,
    "stream_logs_response.json": emu.LogsAccepted,
    "rotate_ingest_token_response.json": emu.IngestTokenResult,
    "me.json": emu.MeResponse,
}


def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", sorted(EMULATOR_MODELS))
def test_emulator_model_accepts_documented_example(name: str) -> None:
    EMULATOR_MODELS[name].model_validate(_load(name))


def test_every_payload_fixture_is_covered() -> None:
    index = json.loads((Path(__file__).parent / "fixtures.index.json").read_text())
    payloads = {name for name, entry in index.items() if entry["kind"] != "error"}
    # Bodies with no emulator model of their own (the logs route takes any JSON records).
    free_form = {"stream_logs_request.json"}
    assert payloads - free_form == set(EMULATOR_MODELS)
