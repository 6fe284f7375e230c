"""Each method sends the route-table request: method, path, query, body and headers."""

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from clientkit import CANARY, ClientFactory, Recorder, fixture

from splendor_api import (
    ROUTES,
    USER_AGENT,
    ConfigError,
    Forbidden,
    Idempotency,
    NotTenantAdmin,
    RequestInvalid,
    SplendorClient,
    Tag,
    models,
)

TENANT_KEY = "spltk.v1.YWNtZQ.EXAMPLE-secret-shown-once"

CREATE = models.CreateAirbyteSource(**fixture("create_airbyte_source_request.json"))
HOSTED = models.CreateHostedSource(source_key="catalog", name="Product catalog", dataset_id="products")
UPDATE = models.SourceUpdate(enabled=False, retention_days=None)


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[Any, ...]
    response: str
    method: str
    path: str
    body: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200


AIRBYTE = "/v1/admin/airbyte-sources"
UPLOADS = "/v1/ingest/sources/app-logs/uploads"
CASES = [
    Case("me", (), "me.json", "GET", "/v1/me"),
    Case("list_providers", (), "list_providers_response.json", "GET", "/v1/admin/connector-providers"),
    Case(
        "discover_provider", ("stripe",), "provider_discovery_response.json", "POST",
        "/v1/admin/connector-providers/stripe/airbyte-discovery",
    ),
    Case(
        "search_catalog", ("hub spot",), "airbyte_catalog_response.json", "GET", "/v1/admin/airbyte-catalog",
        query={"q": "hub spot"},
    ),
    Case("search_catalog", (), "airbyte_catalog_response.json", "GET", "/v1/admin/airbyte-catalog"),
    Case(
        "discover_catalog_definition", ("def/1",), "catalog_discover_response.json", "POST",
        "/v1/admin/airbyte-catalog/def%2F1/discover",
    ),
    Case(
        "create_airbyte_source", (CREATE,), "create_airbyte_source_response.json", "POST", AIRBYTE,
        body=fixture("create_airbyte_source_request.json"),
    ),
    Case("get_airbyte_source", (12,), "get_airbyte_source_response.json", "GET", f"{AIRBYTE}/12"),
    Case(
        "provision", (12, {"api_key": "k"}), "provision_response.json", "POST", f"{AIRBYTE}/12/provision",
        body={"source_configuration": {"api_key": "k"}},
    ),
    Case(
        "complete_oauth", (12, "sec_1"), "complete_oauth_response.json", "POST",
        f"{AIRBYTE}/12/oauth/complete", body={"secret_id": "sec_1"},
    ),
    Case("discover_schema", (12,), "discover_schema_response.json", "POST", f"{AIRBYTE}/12/discover-schema"),
    Case(
        "create_connection", (12,), "create_connection_response.json", "POST", f"{AIRBYTE}/12/connection",
        body={},
    ),
    Case(
        "create_connection", (12, ["charges"]), "create_connection_response.json", "POST",
        f"{AIRBYTE}/12/connection", body={"streams": ["charges"]},
    ),
    Case(
        "start_sync", (12,), "start_sync_pending_response.json", "POST", f"{AIRBYTE}/12/sync",
        body={"trigger": "manual"},
    ),
    Case("refresh_run", (5,), "refresh_run_response.json", "POST", "/v1/admin/airbyte-runs/5/refresh"),
    Case("get_run", (5,), "get_run_response.json", "GET", "/v1/admin/airbyte-runs/5"),
    Case(
        "list_runs", (12,), "list_runs_response.json", "GET", f"{AIRBYTE}/12/runs", query={"limit": "20"}
    ),
    Case(
        "enqueue_ingest", (12,), "enqueue_ingest_response.json", "POST", f"{AIRBYTE}/12/enqueue-ingest",
        body={},
    ),
    Case(
        "enqueue_ingest", (12, 5), "enqueue_ingest_response.json", "POST", f"{AIRBYTE}/12/enqueue-ingest",
        body={"run_id": 5},
    ),
    Case(
        "list_ingest_runs", (), "list_ingest_runs_response.json", "GET", "/v1/ingest/runs",
        kwargs={"source_id": 12, "status": "ready"}, query={"source_id": "12", "status": "ready"},
    ),
    Case(
        "get_ingest_run", ("ing_01H8Z3",), "get_ingest_run_response.json", "GET",
        "/v1/ingest/runs/ing_01H8Z3",
    ),
    Case(
        "list_sources", ("app-logs",), "list_sources_response.json", "GET", "/v1/admin/sources",
        query={"dataset_id": "app-logs"},
    ),
    Case(
        "update_source", (12, UPDATE), "update_source_response.json", "PUT", "/v1/admin/sources/12",
        body={"enabled": False, "retention_days": None},
    ),
    Case(
        "create_hosted_source", (HOSTED,), "source_item.json", "POST", "/v1/admin/hosted-sources",
        body=fixture("create_hosted_source_request.json"),
    ),
    Case(
        "initiate_upload", ("app-logs",), "upload_initiate_response.json", "POST", UPLOADS,
        kwargs={"content_type": "application/x-ndjson", "object_size_bytes": 42},
        body={"content_type": "application/x-ndjson", "object_size_bytes": 42},
    ),
    Case(
        "sign_parts", ("app-logs", "ups_01H8Z3", [1, 2]), "upload_sign_parts_response.json", "POST",
        f"{UPLOADS}/parts", body={"upload_session_id": "ups_01H8Z3", "part_numbers": [1, 2]},
    ),
    Case(
        "complete_upload", ("app-logs", "ups_01H8Z3", [models.CompletedPart(etag='"e1"', part_number=1)]),
        "upload_complete_response.json", "POST", f"{UPLOADS}/complete",
        body={"upload_session_id": "ups_01H8Z3", "parts": [{"etag": '"e1"', "part_number": 1}]},
    ),
    Case(
        "upload_readiness", ("ups_01H8Z3",), "upload_readiness_response.json", "GET",
        "/v1/admin/hosted-uploads/ups_01H8Z3/readiness",
    ),
    Case(
        "stream_logs", ("app-logs", [{"level": "info"}]), "stream_logs_response.json", "POST",
        "/v1/ingest/sources/app-logs/logs", body={"records": [{"level": "info"}]}, status=202,
    ),
    Case(
        "rotate_ingest_token", (12,), "rotate_ingest_token_response.json", "POST",
        "/v1/admin/sources/12/ingest-token",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}-{i}" for i, c in enumerate(CASES)])
async def test_method_sends_the_documented_request(make_client: ClientFactory, case: Case) -> None:
    api = Recorder(httpx.Response(case.status, json=fixture(case.response)))
    await getattr(make_client(api), case.name)(*case.args, **case.kwargs)
    [request] = api.requests
    assert request.method == case.method
    assert request.url.raw_path.decode().split("?")[0] == case.path
    assert dict(request.url.params) == case.query
    headers = request.headers
    assert headers["Authorization"] == f"Bearer {CANARY}"
    assert headers["User-Agent"] == USER_AGENT
    if case.name == "me":
        assert "X-Splendor-Tenant-Id" not in headers
    else:
        assert headers["X-Splendor-Tenant-Id"] == "acme"
    if case.body is None:
        assert request.content == b""
        assert "Content-Type" not in headers
    else:
        assert json.loads(request.content) == case.body
        assert headers["Content-Type"] == "application/json"


def test_every_route_is_exercised_or_external() -> None:
    covered = {case.name for case in CASES} | {"put_object"}
    assert covered == set(ROUTES)


def test_route_table_classes() -> None:
    mutating = {name for name, r in ROUTES.items() if r.idempotency is Idempotency.MUTATING}
    assert mutating == {
        "create_airbyte_source", "provision", "complete_oauth", "create_connection", "start_sync",
        "enqueue_ingest", "update_source", "create_hosted_source", "initiate_upload", "complete_upload",
        "stream_logs", "rotate_ingest_token",
    }  # fmt: skip
    assumed_paths = {name for name, r in ROUTES.items() if r.tag is Tag.ASSUMED}
    assert assumed_paths == {
        "get_airbyte_source",
        "complete_oauth",
        "create_connection",
        "get_run",
        "list_runs",
        "put_object",
    }


async def test_tenant_api_key_sends_no_tenant_header(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, json=fixture("list_sources_response.json")))
    client = make_client(api, token=TENANT_KEY, tenant_id=None)
    await client.list_sources()
    [request] = api.requests
    assert "X-Splendor-Tenant-Id" not in request.headers
    assert request.headers["Authorization"] == f"Bearer {TENANT_KEY}"


async def test_put_object_sends_no_splendor_auth(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, headers={"ETag": '"abc123"'}))
    url = "https://acme-uploads.s3.amazonaws.com/uploads/ups_1/data.jsonl?X-Amz-Signature=sig&partNumber=1"
    etag = await make_client(api).put_object(url, b"line\n", {"content-type": "application/x-ndjson"})
    assert etag == '"abc123"'
    [request] = api.requests
    assert str(request.url) == url
    assert request.method == "PUT"
    assert request.content == b"line\n"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert "Authorization" not in request.headers
    assert "X-Splendor-Tenant-Id" not in request.headers


async def test_preflight_returns_the_admin_tenant(make_client: ClientFactory) -> None:
    access = await make_client(Recorder(httpx.Response(200, json=fixture("me.json")))).preflight()
    assert (access.tenant_id, access.is_admin) == ("acme", True)


async def test_preflight_refuses_a_member(make_client: ClientFactory) -> None:
    me = fixture("me.json")
    me["tenants"][0].update(role="Member", is_admin=False)
    with pytest.raises(NotTenantAdmin) as caught:
        await make_client(Recorder(httpx.Response(200, json=me))).preflight()
    assert "the token is not an admin of tenant acme" in str(caught.value)
    assert caught.value.status == 403 and caught.value.permanent


async def test_preflight_refuses_an_unknown_tenant(make_client: ClientFactory) -> None:
    me = fixture("me.json")
    me["tenants"][0]["tenant_id"] = "globex"
    with pytest.raises(Forbidden) as caught:
        await make_client(Recorder(httpx.Response(200, json=me))).preflight()
    assert not isinstance(caught.value, NotTenantAdmin)
    assert "no access to tenant acme" in str(caught.value)


async def test_preflight_with_a_tenant_key_skips_the_role_check(make_client: ClientFactory) -> None:
    me = {"user_id": "apikey_1", "tenants": []}
    api = Recorder(httpx.Response(200, json=me))
    access = await make_client(api, token=TENANT_KEY, tenant_id=None).preflight()
    assert (access.tenant_id, access.is_admin) == ("acme", True)
    assert "X-Splendor-Tenant-Id" not in api.requests[0].headers


async def test_preflight_with_a_tenant_key_for_another_tenant(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, json={"user_id": "apikey_1", "tenants": []}))
    with pytest.raises(ConfigError, match="belongs to 'acme'"):
        await make_client(api, token=TENANT_KEY, tenant_id="globex").preflight()


async def test_find_source_matches_the_key(make_client: ClientFactory) -> None:
    client = make_client(Recorder(httpx.Response(200, json=fixture("list_sources_response.json"))))
    found = await client.find_source("app-logs")
    assert found is not None and found.source_id == 12
    assert await client.find_source("nope") is None


async def test_invalid_arguments_fail_locally(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, json={}))
    client = make_client(api)
    with pytest.raises(RequestInvalid, match=r"start_sync: .*trigger"):
        await client.start_sync(12, trigger="hourly")
    with pytest.raises(RequestInvalid, match="part_numbers"):
        await client.sign_parts("app-logs", "ups_1", [])
    with pytest.raises(RequestInvalid, match="object_size_bytes"):
        await client.initiate_upload("app-logs", content_type="text/csv", object_size_bytes=-1)
    with pytest.raises(RequestInvalid, match="records"):
        await client.stream_logs("app-logs", [])
    assert api.count == 0


def test_create_request_limits_name_the_field() -> None:
    base = fixture("create_airbyte_source_request.json")
    with pytest.raises(pydantic.ValidationError, match="provider_key"):
        models.CreateAirbyteSource(**{**base, "provider_key": "x" * 65})
    with pytest.raises(pydantic.ValidationError, match="source_key"):
        models.CreateAirbyteSource(**{**base, "source_key": ""})
    with pytest.raises(pydantic.ValidationError, match="schedule_type"):
        models.CreateAirbyteSource(**{**base, "schedule_type": "hourly"})
    with pytest.raises(pydantic.ValidationError, match="retention_days"):
        models.CreateAirbyteSource(**{**base, "retention_days": 0})
    with pytest.raises(pydantic.ValidationError, match="cron_expression"):
        models.CreateAirbyteSource(**{**base, "schedule_type": "cron"})
    with pytest.raises(pydantic.ValidationError, match="provider_key or source_definition_id"):
        models.CreateAirbyteSource(**{k: v for k, v in base.items() if k != "provider_key"})
    with pytest.raises(pydantic.ValidationError, match="bogus"):
        models.CreateAirbyteSource(**{**base, "bogus": 1})


def test_external_id_is_sent_but_not_shown() -> None:
    base = fixture("create_airbyte_source_request.json")
    req = models.CreateAirbyteSource(**{**base, "external_id": "ext-secret-1"}, source_definition_id="def_1")
    assert "ext-secret-1" not in repr(req)
    assert req.to_body()["external_id"] == "ext-secret-1"
    assert req.to_body()["source_definition_id"] == "def_1"


async def test_context_manager_closes_the_http_client(make_client: ClientFactory) -> None:
    client = make_client(Recorder(httpx.Response(200, json=fixture("me.json"))))
    async with client as opened:
        assert opened is client
        await opened.me()
    assert client._http.is_closed
    assert repr(client) == "SplendorClient(api_base='https://splendor.test', tenant_id='acme')"


def test_client_builds_a_private_gate_from_the_config() -> None:
    from clientkit import make_config

    client = SplendorClient(make_config(max_concurrency=3))
    assert client.gate.max_concurrency == 3
