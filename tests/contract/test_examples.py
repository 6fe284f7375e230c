"""Every example payload of splendor-api.md, saved under fixtures/, is understood by the client.

fixtures.index.json says what each file is: a schema example, a route's request or response, or an error
body, with the status it comes with and whether the docs show it (DOC) or the contract decides it (ASSUMED).
"""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from splendor_api import (
    ROUTES,
    ApiError,
    Conflict,
    NotFound,
    RetriesExhausted,
    SplendorClient,
    SplendorConfig,
    SplendorError,
    Unavailable,
    ValidationFailed,
    models,
)
from splendor_api.retry import RetryPolicy

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
INDEX: dict[str, dict[str, Any]] = json.loads((HERE / "fixtures.index.json").read_text())

SCHEMAS: dict[str, Any] = {
    "SourceItem": models.Source,
    "AirbyteSourceState": models.AirbyteState,
    "ConnectorItem": models.Connector,
    "ConnectorRunItem": models.ConnectorRun,
    "IngestRunItem": models.IngestRun,
}

REQUESTS: dict[str, type[models.RequestModel]] = {
    "create_airbyte_source": models.CreateAirbyteSource,
    "provision": models.ProvisionRequest,
    "complete_oauth": models.CompleteOAuthRequest,
    "update_source": models.SourceUpdate,
    "create_connection": models.CreateConnectionRequest,
    "start_sync": models.StartSyncRequest,
    "enqueue_ingest": models.EnqueueIngestRequest,
    "create_hosted_source": models.CreateHostedSource,
    "stream_logs": models.StreamLogsRequest,
}

# How each route's response is read by the client: (method name, positional args).
CALLS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "me": ("me", ()),
    "list_providers": ("list_providers", ()),
    "discover_provider": ("discover_provider", ("stripe",)),
    "search_catalog": ("search_catalog", ("stripe",)),
    "discover_catalog_definition": ("discover_catalog_definition", ("def_1",)),
    "create_airbyte_source": (
        "create_airbyte_source",
        (
            models.CreateAirbyteSource(
                provider_key="stripe",
                connector_key="stripe",
                connector_name="Stripe",
                source_key="stripe",
                source_name="Stripe",
                dataset_id="stripe",
                bucket="acme-connectors",
                iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
            ),
        ),
    ),
    "get_airbyte_source": ("get_airbyte_source", (12,)),
    "provision": ("provision", (12, {})),
    "complete_oauth": ("complete_oauth", (12, "secret_1")),
    "discover_schema": ("discover_schema", (12,)),
    "update_source": ("update_source", (12, models.SourceUpdate(enabled=True))),
    "create_connection": ("create_connection", (12,)),
    "start_sync": ("start_sync", (12,)),
    "refresh_run": ("refresh_run", (5,)),
    "get_run": ("get_run", (5,)),
    "list_runs": ("list_runs", (12,)),
    "enqueue_ingest": ("enqueue_ingest", (12,)),
    "list_ingest_runs": ("list_ingest_runs", ()),
    "get_ingest_run": ("get_ingest_run", ("ing_01H8Z3",)),
    "list_sources": ("list_sources", ()),
    "create_hosted_source": (
        "create_hosted_source",
        (models.CreateHostedSource(source_key="catalog", name="Product catalog", dataset_id="products"),),
    ),
    "initiate_upload": ("initiate_upload", ("app-logs",)),
    "sign_parts": ("sign_parts", ("app-logs", "ups_01H8Z3", [1])),
    "complete_upload": ("complete_upload", ("app-logs", "ups_01H8Z3")),
    "upload_readiness": ("upload_readiness", ("ups_01H8Z3",)),
    "stream_logs": ("stream_logs", ("app-logs", [{"message": "hello"}])),
    "rotate_ingest_token": ("rotate_ingest_token", (12,)),
}
CALL_KWARGS: dict[str, dict[str, Any]] = {
    "initiate_upload": {"content_type": "application/x-ndjson", "object_size_bytes": 10},
}

ERRORS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 422: ValidationFailed, 503: Unavailable}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def by_kind(kind: str) -> list[str]:
    return sorted(name for name, meta in INDEX.items() if meta["kind"] == kind)


def client_answering(status: int, payload: Any) -> SplendorClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=payload, headers={"Retry-After": "0"} if status == 503 else None)

    config = SplendorConfig(api_base="https://splendor.test", tenant_id="acme", token="tok", max_attempts=1)
    return SplendorClient(config, transport=httpx.MockTransport(handler), retry_policy=RetryPolicy())


def test_every_fixture_is_indexed_and_every_index_entry_exists() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")}
    assert on_disk == set(INDEX)
    for meta in INDEX.values():
        assert meta["tag"] in ("DOC", "ASSUMED")
        if "route" in meta:
            assert meta["route"] in ROUTES


@pytest.mark.parametrize("name", by_kind("schema"))
def test_schema_examples_parse(name: str) -> None:
    model = SCHEMAS[INDEX[name]["schema"]]
    parsed = TypeAdapter(model).validate_python(load(name))
    # Nothing in a documented example should be unknown to the model.
    assert not parsed.model_extra, f"{name}: fields not modelled: {sorted(parsed.model_extra)}"


@pytest.mark.parametrize("name", by_kind("request"))
def test_request_examples_validate_and_round_trip(name: str) -> None:
    payload = load(name)
    model = REQUESTS[INDEX[name]["route"]]
    request = model.model_validate(payload)
    assert request.to_body() == payload


@pytest.mark.parametrize("name", by_kind("response"))
async def test_response_examples_parse_through_the_client(name: str) -> None:
    meta = INDEX[name]
    method, args = CALLS[meta["route"]]
    async with client_answering(meta["status"], load(name)) as client:
        result = await getattr(client, method)(*args, **CALL_KWARGS.get(meta["route"], {}))
    items = result if isinstance(result, list) else [result]
    assert items, f"{name}: parsed to an empty list"
    for item in items:
        assert isinstance(item, models.ApiModel)


@pytest.mark.parametrize("name", by_kind("error"))
async def test_error_examples_map_to_error_classes(name: str) -> None:
    meta = INDEX[name]
    status = meta["status"]
    async with client_answering(status, load(name)) as client:
        with pytest.raises(SplendorError) as caught:
            await client.list_sources()
    error = caught.value
    if isinstance(error, RetriesExhausted):  # 503 is transient: with one attempt allowed it surfaces wrapped
        assert isinstance(error.last_error, ApiError)
        error = error.last_error
    assert isinstance(error, ERRORS[status])
    detail = load(name)["detail"]
    if isinstance(detail, dict):
        assert error.code == detail["code"]


def test_conflict_examples_expose_ids() -> None:
    sync = Conflict(
        status=409, method="POST", path="/x", detail=load("error_sync_in_progress.json")["detail"]
    )
    assert (sync.code, sync.run_id) == ("sync_in_progress", 5)
    exists = Conflict(
        status=409, method="POST", path="/x", detail=load("error_source_key_exists.json")["detail"]
    )
    assert (exists.code, exists.source_id) == ("source_key_exists", 12)


def test_validation_example_gives_field_errors() -> None:
    error = ValidationFailed(
        status=422, method="POST", path="/x", detail=load("error_validation.json")["detail"]
    )
    assert error.field_errors == [("body.source_key", "String should have at least 1 character")]


def test_oauth_provision_example_carries_consent_url() -> None:
    result = models.ProvisionResult.model_validate(load("provision_oauth_response.json"))
    assert result.consent_url == "https://connect.airbyte.com/oauth/..."
    assert result.airbyte.credential_status == models.CredentialStatus.PENDING_OAUTH


def test_rotated_token_is_secret() -> None:
    token = models.IngestToken.model_validate(load("rotate_ingest_token_response.json"))
    assert "sit_live_8f2c3d4e" not in repr(token)
    assert token.token.get_secret_value() == "sit_live_8f2c3d4e"
