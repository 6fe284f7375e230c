"""Status codes map to error classes that carry the API's detail and say whether retrying can help."""

import httpx
import pytest
from clientkit import ClientFactory, Recorder, fixture

from splendor_api import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotTenantAdmin,
    OutcomeUnknown,
    ResponseInvalid,
    RetriesExhausted,
    ServerError,
    Unauthorized,
    Unavailable,
    UpstreamError,
    ValidationFailed,
)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (410, ApiError),
        (422, ValidationFailed),
        (501, ServerError),
    ],
)
async def test_status_maps_to_class_and_is_sent_once(
    make_client: ClientFactory, status: int, cls: type
) -> None:
    api = Recorder(httpx.Response(status, json={"detail": "Dataset not found"}))
    client = make_client(api)
    with pytest.raises(cls) as caught:
        await client.list_sources(dataset_id="logs")
    error = caught.value
    assert type(error) is cls
    assert api.count == 1
    assert (error.status, error.method, error.path) == (status, "GET", "/v1/admin/sources")
    assert str(error) == f"GET /v1/admin/sources (list_sources) -> HTTP {status}: Dataset not found"
    assert error.permanent is (status < 500)


@pytest.mark.parametrize(("status", "cls"), [(502, UpstreamError), (503, Unavailable), (429, Unavailable)])
async def test_transient_statuses_surface_after_retries(
    make_client: ClientFactory, status: int, cls: type
) -> None:
    api = Recorder(httpx.Response(status, json={"detail": "busy"}))
    client = make_client(api, max_attempts=3)
    with pytest.raises(RetriesExhausted) as caught:
        await client.list_sources()
    assert isinstance(caught.value.last_error, cls)
    assert caught.value.last_error.permanent is False
    assert api.count == 3


async def test_conflict_exposes_code_and_run_id(make_client: ClientFactory) -> None:
    client = make_client(Recorder(httpx.Response(409, json=fixture("error_sync_in_progress.json"))))
    with pytest.raises(Conflict) as caught:
        await client.start_sync(12)
    error = caught.value
    assert (error.code, error.run_id, error.source_id) == ("sync_in_progress", 5, None)
    assert "sync_in_progress" in str(error) and "run_id=5" in str(error)
    assert "POST /v1/admin/airbyte-sources/12/sync" in str(error)
    assert error.permanent


async def test_conflict_exposes_existing_source_id(make_client: ClientFactory) -> None:
    client = make_client(Recorder(httpx.Response(409, json=fixture("error_source_key_exists.json"))))
    request = fixture("create_airbyte_source_request.json")
    from splendor_api.models import CreateAirbyteSource

    with pytest.raises(Conflict) as caught:
        await client.create_airbyte_source(CreateAirbyteSource(**request))
    assert (caught.value.code, caught.value.source_id) == ("source_key_exists", 12)


async def test_validation_failed_lists_field_errors_without_echoed_input(make_client: ClientFactory) -> None:
    detail = [
        {
            "type": "missing",
            "loc": ["body", "source_configuration", "api_key"],
            "msg": "Field required",
            "input": {"account_id": "acct-secret-value"},
        },
        {
            "type": "string_too_short",
            "loc": ["body", "source_key"],
            "msg": "String should have at least 1 character",
            "input": "",
        },
    ]
    client = make_client(Recorder(httpx.Response(422, json={"detail": detail})))
    with pytest.raises(ValidationFailed) as caught:
        await client.provision(12, {"account_id": "acct-secret-value"})
    error = caught.value
    assert error.field_errors == [
        ("body.source_configuration.api_key", "Field required"),
        ("body.source_key", "String should have at least 1 character"),
    ]
    assert "acct-secret-value" not in str(error)
    assert "acct-secret-value" not in repr(error.detail)
    assert "body.source_configuration.api_key: Field required" in str(error)


async def test_unavailable_carries_retry_after(make_client: ClientFactory) -> None:
    client = make_client(
        Recorder(
            httpx.Response(503, json=fixture("error_capacity_exhausted.json"), headers={"Retry-After": "7"})
        ),
        max_attempts=1,
    )
    with pytest.raises(RetriesExhausted) as caught:
        await client.list_sources()
    last = caught.value.last_error
    assert isinstance(last, Unavailable)
    assert last.retry_after == 7.0
    assert last.code == "semantic_search_capacity_exhausted"


def test_permanence_of_every_class() -> None:
    def api(cls: type[ApiError], status: int) -> ApiError:
        return cls(status=status, method="GET", path="/p", detail=None)

    assert api(BadRequest, 400).permanent
    assert api(NotTenantAdmin, 403).permanent
    assert api(Conflict, 409).permanent
    assert not api(Unavailable, 429).permanent
    assert not api(Unavailable, 503).permanent
    assert not api(ServerError, 500).permanent
    assert not api(UpstreamError, 502).permanent
    cause = httpx.ReadTimeout("timed out")
    assert not OutcomeUnknown(method="POST", path="/p", route="r", cause=cause).permanent
    assert RetriesExhausted(
        method="GET", path="/p", route="r", attempts=2, elapsed=1.0, last_error=cause
    ).permanent
    assert ResponseInvalid(method="GET", path="/p", route="r", status=200, reason="x").permanent
    assert issubclass(NotTenantAdmin, Forbidden)


async def test_non_json_error_body_is_summarised(make_client: ClientFactory) -> None:
    page = "<html><head><title>404 Not Found</title></head><body>" + "x" * 5000 + "</body></html>"
    client = make_client(Recorder(httpx.Response(404, text=page, headers={"Content-Type": "text/html"})))
    with pytest.raises(NotFound) as caught:
        await client.get_run(5)
    assert "non-JSON error page: 404 Not Found" in str(caught.value)
    assert len(str(caught.value)) < 300
