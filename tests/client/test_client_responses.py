"""Responses that cannot be used surface as ResponseInvalid, naming the call and the field."""

import httpx
import pytest
from clientkit import ClientFactory, Recorder, fixture

from splendor_api import ResponseInvalid

PROXY_PAGE = """<!DOCTYPE html>
<html><head><title>Gateway Timeout - corp proxy</title></head>
<body><h1>The upstream server did not answer.</h1></body></html>"""


async def test_html_proxy_page_with_200_is_invalid(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, text=PROXY_PAGE, headers={"Content-Type": "text/html; charset=utf-8"}))
    with pytest.raises(ResponseInvalid) as caught:
        await make_client(api).list_sources()
    message = str(caught.value)
    assert "GET /v1/admin/sources (list_sources) -> HTTP 200" in message
    assert "not valid JSON (text/html" in message
    assert "Gateway Timeout - corp proxy" in message
    assert caught.value.permanent


async def test_truncated_json_is_invalid(make_client: ClientFactory) -> None:
    body = httpx.Response(200, json=fixture("list_sources_response.json")).content[:57]
    api = Recorder(httpx.Response(200, content=body, headers={"Content-Type": "application/json"}))
    with pytest.raises(ResponseInvalid, match="not valid JSON"):
        await make_client(api).list_sources()


async def test_missing_required_field_is_named(make_client: ClientFactory) -> None:
    payload = fixture("list_sources_response.json")
    del payload["sources"][0]["source_key"]
    with pytest.raises(ResponseInvalid) as caught:
        await make_client(Recorder(httpx.Response(200, json=payload))).list_sources()
    error = caught.value
    assert error.fields == ["sources.0.source_key"]
    assert "GET /v1/admin/sources (list_sources)" in str(error)
    assert "sources.0.source_key: Field required" in str(error)


async def test_missing_field_in_an_unwrapped_response_is_named(make_client: ClientFactory) -> None:
    payload = fixture("get_ingest_run_response.json")
    del payload["status"]
    with pytest.raises(ResponseInvalid) as caught:
        await make_client(Recorder(httpx.Response(200, json=payload))).get_ingest_run("ing_01H8Z3")
    assert caught.value.fields == ["status"]
    assert "/v1/ingest/runs/ing_01H8Z3" in str(caught.value)


async def test_missing_envelope_is_named(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, json=fixture("connector_run_item.json")))
    with pytest.raises(ResponseInvalid) as caught:
        await make_client(api).refresh_run(5)
    assert caught.value.fields == ["run"]
    assert "missing field 'run'" in str(caught.value)


async def test_wrong_type_is_reported_without_the_value(make_client: ClientFactory) -> None:
    payload = fixture("rotate_ingest_token_response.json")
    payload["source_id"] = "sit_live_leak"
    with pytest.raises(ResponseInvalid) as caught:
        await make_client(Recorder(httpx.Response(200, json=payload))).rotate_ingest_token(12)
    assert caught.value.fields == ["source_id"]
    assert "sit_live_leak" not in str(caught.value)


async def test_unknown_fields_are_tolerated(make_client: ClientFactory) -> None:
    payload = fixture("refresh_run_response.json")
    payload["run"]["attempts"] = 3
    payload["request_id"] = "req_1"
    run = await make_client(Recorder(httpx.Response(200, json=payload))).refresh_run(5)
    assert run.model_extra == {"attempts": 3}


async def test_unknown_run_status_is_kept_for_the_caller_to_reject(make_client: ClientFactory) -> None:
    payload = fixture("refresh_run_response.json")
    payload["run"]["status"] = "quarantined"
    run = await make_client(Recorder(httpx.Response(200, json=payload))).refresh_run(5)
    assert run.status == "quarantined"
    assert not run.is_terminal and not run.is_active and not run.status_known


async def test_object_store_without_etag_is_invalid(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200))
    with pytest.raises(ResponseInvalid, match="ETag") as caught:
        await make_client(api).put_object("https://bucket.test/a/b?X-Amz-Signature=sig123", b"data", {})
    assert "sig123" not in str(caught.value)
    assert "bucket.test/a/b" in str(caught.value)
