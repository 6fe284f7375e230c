"""The token and connector credentials never leak into errors, reprs or logs."""

import logging

import httpx
import pytest
from clientkit import CANARY, ClientFactory, Recorder, fixture

from splendor_api import SplendorError, ValidationFailed, models

CREDENTIAL = "cred-canary-YYYY"


async def test_canary_token_never_appears(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    me = fixture("me.json")
    me["tenants"][0]["is_admin"] = False
    scenarios = [
        ("list_sources", (), httpx.Response(401, json={"detail": f"Invalid token {CANARY}"})),
        ("list_sources", (), httpx.Response(503, headers={"Retry-After": "1"})),
        (
            "list_sources",
            (),
            httpx.Response(
                200, text=f"<html><title>{CANARY}</title></html>", headers={"Content-Type": "text/html"}
            ),
        ),
        ("start_sync", (12,), httpx.ReadTimeout("timed out")),
        ("start_sync", (12,), httpx.Response(409, json={"detail": {"code": "x", "message": CANARY}})),
        ("provision", (12, {"api_key": CREDENTIAL}), httpx.Response(500, json={"detail": "boom"})),
        (
            "provision",
            (12, {"api_key": CREDENTIAL}),
            httpx.Response(
                422, json={"detail": [{"loc": ["body"], "msg": "bad", "input": {"api_key": CREDENTIAL}}]}
            ),
        ),
        ("preflight", (), httpx.Response(200, json=me)),
        ("get_run", (5,), httpx.ConnectError("refused")),
    ]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for method, args, answer in scenarios:
            api = Recorder(answer)
            client = make_client(api, max_attempts=2)
            with pytest.raises(SplendorError) as caught:
                await getattr(client, method)(*args)
            error = caught.value
            texts += [str(error), repr(error), repr(getattr(error, "detail", None))]
            texts += [str(getattr(error, "last_error", "")), str(getattr(error, "cause", ""))]
            texts += [repr(client), repr(client.config), str(client.config)]
            # The token did go out, in the Authorization header only.
            assert api.requests[0].headers["Authorization"] == f"Bearer {CANARY}"
    texts.append(caplog.text)
    assert caplog.records, "expected retry and debug logging"
    for text in texts:
        assert CANARY not in text
        assert CREDENTIAL not in text


async def test_provision_body_is_not_logged(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    api = Recorder(
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(200, json=fixture("provision_response.json")),
    )
    with caplog.at_level(logging.DEBUG):
        await make_client(api).provision(12, {"api_key": CREDENTIAL})
    assert CREDENTIAL.encode() in api.requests[0].content
    assert "provision" in caplog.text
    assert CREDENTIAL not in caplog.text


async def test_rotated_ingest_token_is_masked(make_client: ClientFactory) -> None:
    api = Recorder(httpx.Response(200, json=fixture("rotate_ingest_token_response.json")))
    token = await make_client(api).rotate_ingest_token(12)
    assert "sit_live_8f2c3d4e" not in repr(token) and "sit_live_8f2c3d4e" not in str(token)
    assert token.token.get_secret_value() == "sit_live_8f2c3d4e"


@pytest.mark.parametrize(
    ("method", "args", "secret"),
    [
        ("provision", (12, {"api_key": CREDENTIAL, "nested": {"password": f"pw-{CREDENTIAL}"}}), CREDENTIAL),
        ("provision", (12, {"nested": {"password": f"pw-{CREDENTIAL}"}}), f"pw-{CREDENTIAL}"),
        ("complete_oauth", (12, f"secret-{CREDENTIAL}"), f"secret-{CREDENTIAL}"),
        (
            "create_airbyte_source",
            (
                models.CreateAirbyteSource(
                    **{**fixture("create_airbyte_source_request.json"), "external_id": CREDENTIAL}
                ),
            ),
            CREDENTIAL,
        ),
    ],
    ids=["credential", "nested-credential", "oauth-secret-id", "external-id"],
)
async def test_credential_quoted_anywhere_in_a_422_is_masked(
    make_client: ClientFactory, method: str, args: tuple[object, ...], secret: str
) -> None:
    # Validators quote the value they reject in `msg` and `ctx`, not only in the echoed `input`.
    detail = [
        {
            "loc": ["body", "source_configuration", "api_key"],
            "msg": f"String '{secret}' does not match '^sk_'",
            "type": "string_pattern_mismatch",
            "ctx": {"pattern": "^sk_", "given": secret},
            "input": secret,
        }
    ]
    client = make_client(Recorder(httpx.Response(422, json={"detail": detail})))
    with pytest.raises(ValidationFailed) as caught:
        await getattr(client, method)(*args)
    error = caught.value
    for text in (str(error), repr(error), repr(error.detail), repr(error.field_errors)):
        assert secret not in text
    # What the operator needs stays: which field, and why.
    assert error.field_errors == [("body.source_configuration.api_key", "String '***' does not match '^sk_'")]
