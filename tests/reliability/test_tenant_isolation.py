"""Tenant isolation: another tenant's token can neither read nor change acme's objects, and the client
always sends the tenant it was configured for.

The route table covers every tenant-scoped route of the emulator that takes an object id or key. Each
cross-tenant request must be refused (403/404, nothing in the body about acme's object) and acme's
state and committed-mutation log must be identical afterwards.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from splendor_api import SplendorClient, SplendorConfig, SplendorError, models
from splendor_emulator import Emulator
from tests.reliability.conftest import RemoteState

ACME = {"Authorization": "Bearer acme-admin-token", "X-Splendor-Tenant-Id": "acme"}
GLOBEX = {"Authorization": "Bearer globex-user-token", "X-Splendor-Tenant-Id": "globex"}


async def acme_objects(emu: Emulator) -> dict[str, Any]:
    """One of each acme object: an Airbyte source with a finished run and ingest runs, and an upload."""
    key = f"iso-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=emu.base_url, headers=ACME, timeout=10) as http:
        created = await http.post(
            "/v1/admin/airbyte-sources",
            json={
                "provider_key": "stripe",
                "connector_key": "stripe",
                "connector_name": "Stripe",
                "source_key": key,
                "source_name": key,
                "dataset_id": "payments",
                "bucket": "acme-connectors",
                "iam_role_arn": "arn:aws:iam::123456789012:role/acme",
                "streams": ["charges"],
            },
        )
        source_id = created.raise_for_status().json()["source"]["source_id"]
        creds = {"api_key": "sk_test_iso", "account_id": "acct_iso", "start_date": "2026-01-01"}
        await http.post(
            f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": creds}
        )
        await http.post(f"/v1/admin/airbyte-sources/{source_id}/connection", json={})
        run = (await http.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={})).json()["run"]
        while (await http.get(f"/v1/admin/airbyte-runs/{run['run_id']}")).json()["run"][
            "status"
        ] != "succeeded":
            await asyncio.sleep(0.1)
        ingest = (await http.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={})).json()
        hosted = await http.post(
            "/v1/admin/hosted-sources",
            json={
                "source_key": f"{key}-files",
                "name": "files",
                "dataset_id": "files",
                "source_type": "hosted",
            },
        )
        hosted_key = hosted.raise_for_status().json()["source_key"]
        upload = await http.post(
            f"/v1/ingest/sources/{hosted_key}/uploads",
            json={"content_type": "application/jsonl", "object_size_bytes": 10, "filename": "a.jsonl"},
        )
    return {
        "source_id": source_id,
        "source_key": key,
        "run_id": run["run_id"],
        "ingest_run_id": ingest["ingest_runs"][0]["ingest_run_id"],
        "hosted_key": hosted_key,
        "upload_session_id": upload.raise_for_status().json()["upload_session_id"],
    }


# (method, path template, JSON body) of every tenant-scoped route that names an object.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/admin/airbyte-sources/{source_id}", None),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/provision", {"source_configuration": {}}),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/oauth/complete", {"secret_id": "x"}),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/discover-schema", None),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/connection", {}),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/sync", {"trigger": "manual"}),
    ("POST", "/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", {"run_id": "{run_id}"}),
    ("POST", "/v1/admin/airbyte-runs/{run_id}/refresh", None),
    ("GET", "/v1/admin/airbyte-runs/{run_id}", None),
    ("POST", "/v1/admin/airbyte-runs/{run_id}/cancel", None),
    ("PUT", "/v1/admin/sources/{source_id}", {"name": "taken over"}),
    ("POST", "/v1/admin/sources/{source_id}/ingest-token", None),
    ("GET", "/v1/ingest/runs/{ingest_run_id}", None),
    ("GET", "/v1/admin/hosted-uploads/{upload_session_id}/readiness", None),
    (
        "POST",
        "/v1/ingest/sources/{hosted_key}/uploads",
        {"content_type": "text/plain", "object_size_bytes": 1},
    ),
    (
        "POST",
        "/v1/ingest/sources/{hosted_key}/uploads/parts",
        {"upload_session_id": "{upload_session_id}", "part_numbers": [1]},
    ),
    (
        "POST",
        "/v1/ingest/sources/{hosted_key}/uploads/complete",
        {"upload_session_id": "{upload_session_id}"},
    ),
    ("POST", "/v1/ingest/sources/{hosted_key}/logs", {"records": [{"message": "x"}]}),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(
    "headers",
    [
        GLOBEX,
        {"Authorization": "Bearer acme-admin-token", "X-Splendor-Tenant-Id": "globex"},
        {"Authorization": "Bearer globex-user-token", "X-Splendor-Tenant-Id": "acme"},
        {"Authorization": "Bearer globex-user-token"},
    ],
    ids=["globex-token", "acme-token-globex-header", "globex-token-acme-header", "globex-token-no-header"],
)
async def test_cross_tenant_requests_are_refused(emulator: Emulator, headers: dict[str, str]) -> None:
    ids = await acme_objects(emulator)
    remote = RemoteState(emulator, attempts=False)
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers, timeout=10) as http:
        for method, template, body in ROUTES:
            response = await http.request(method, template.format(**ids), json=_fill(body, ids))
            outcomes[f"{method} {template}"] = response.status_code
            assert ids["source_key"] not in response.text
        listed = await http.get("/v1/admin/sources")
        if listed.status_code == 200:
            assert ids["source_key"] not in listed.text
        runs = await http.get("/v1/ingest/runs", params={"source_id": ids["source_id"]})
        if runs.status_code == 200:
            assert runs.json()["runs"] == []
    refused = {route: code for route, code in outcomes.items() if code not in (400, 401, 403, 404)}
    assert not refused, f"cross-tenant requests not refused: {refused}"
    remote.assert_unchanged()


# --- the client sends the tenant it was configured for, on every call ------------------------------

Call = Callable[[SplendorClient], Awaitable[Any]]
SOURCE = models.CreateAirbyteSource(
    bucket="acme-connectors",
    connector_key="stripe",
    connector_name="Stripe",
    dataset_id="d",
    iam_role_arn="arn:aws:iam::123456789012:role/x",
    source_key="k",
    source_name="k",
    provider_key="stripe",
)
CALLS: dict[str, Call] = {
    "complete_oauth": lambda c: c.complete_oauth(1, "secret"),
    "complete_upload": lambda c: c.complete_upload("k", "ups_1"),
    "create_airbyte_source": lambda c: c.create_airbyte_source(SOURCE),
    "create_connection": lambda c: c.create_connection(1),
    "create_hosted_source": lambda c: c.create_hosted_source(
        models.CreateHostedSource(source_key="k", name="n", dataset_id="d")
    ),
    "discover_catalog_definition": lambda c: c.discover_catalog_definition("def"),
    "discover_provider": lambda c: c.discover_provider("stripe"),
    "discover_schema": lambda c: c.discover_schema(1),
    "enqueue_ingest": lambda c: c.enqueue_ingest(1, 2),
    "find_source": lambda c: c.find_source("k"),
    "get_airbyte_source": lambda c: c.get_airbyte_source(1),
    "get_ingest_run": lambda c: c.get_ingest_run("ing_1"),
    "get_run": lambda c: c.get_run(1),
    "list_runs": lambda c: c.list_runs(1),
    "initiate_upload": lambda c: c.initiate_upload("k", content_type="text/plain", object_size_bytes=1),
    "list_ingest_runs": lambda c: c.list_ingest_runs(source_id=1),
    "list_providers": lambda c: c.list_providers(),
    "list_sources": lambda c: c.list_sources(),
    "me": lambda c: c.me(),
    "preflight": lambda c: c.preflight(),
    # doctor's probe of a mutating route with ids that name nothing (a route that takes a tenant).
    "probe_absent": lambda c: c.probe_absent("start_sync"),
    "provision": lambda c: c.provision(1, {"api_key": "sk_test_x"}),
    "put_object": lambda c: c.put_object("https://objects.test/b/k?sig=abc", b"x", {}),
    "refresh_run": lambda c: c.refresh_run(1),
    "rotate_ingest_token": lambda c: c.rotate_ingest_token(1),
    "search_catalog": lambda c: c.search_catalog("stripe"),
    "sign_parts": lambda c: c.sign_parts("k", "ups_1", [1]),
    "start_sync": lambda c: c.start_sync(1),
    "stream_logs": lambda c: c.stream_logs("k", [{"message": "m"}]),
    "update_source": lambda c: c.update_source(1, models.SourceUpdate(name="n")),
    "upload_readiness": lambda c: c.upload_readiness("ups_1"),
}


def test_every_client_method_is_covered() -> None:
    import inspect

    public = {
        name
        for name, fn in inspect.getmembers(SplendorClient, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "aclose"
    }
    assert public == set(CALLS), f"add new client methods to CALLS: {sorted(public ^ set(CALLS))}"


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_client_always_sends_its_tenant(method: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"ETag": '"e"'})

    config = SplendorConfig(
        api_base="https://splendor.test", tenant_id="acme", token="acme-admin-token", max_attempts=1
    )
    async with SplendorClient(config, transport=httpx.MockTransport(handler)) as client:
        # The empty answers do not parse; only the requests matter here.
        with contextlib.suppress(SplendorError):
            await CALLS[method](client)
    assert seen, f"{method} sent nothing"
    for request in seen:
        tenant = request.headers.get("X-Splendor-Tenant-Id")
        if request.url.host != "splendor.test":
            # Presigned object-store URLs get neither the tenant nor the token.
            assert tenant is None and "Authorization" not in request.headers
        elif request.url.path == "/v1/me":
            # The identity call is the one route the API defines without a tenant header.
            assert tenant is None
        else:
            assert tenant == "acme", f"{method}: {request.method} {request.url.path} sent tenant {tenant!r}"
