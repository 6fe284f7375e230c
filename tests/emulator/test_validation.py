"""Request validation: FastAPI's 422 array, documented limits, hostile keys, and secrets never echoed."""

import json

import httpx
import pytest

from splendor_emulator import Emulator

from .helpers import source_body

SECRET = "sk_live_SUPERSECRET_do_not_echo"


def _create(admin: httpx.Client, **overrides: object) -> httpx.Response:
    return admin.post("/v1/admin/airbyte-sources", json=source_body() | overrides)


def test_422_has_fastapi_shape(admin: httpx.Client) -> None:
    body = source_body()
    del body["bucket"]
    response = admin.post("/v1/admin/airbyte-sources", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "bucket"] and error["type"] == "missing" and "msg" in error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connector_key", ""),
        ("connector_key", "k" * 129),
        ("source_name", "n" * 256),
        ("dataset_id", "d" * 129),
        ("iam_role_arn", ""),
        ("provider_key", "p" * 65),
        ("retention_days", 0),
        ("schedule_type", "hourly"),
        ("prefix", "p" * 1025),
        ("cron_expression", "c" * 256),
        ("streams", "charges"),
    ],
)
def test_documented_limits(admin: httpx.Client, field: str, value: object) -> None:
    response = _create(admin, **{field: value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_cron_needs_expression(admin: httpx.Client) -> None:
    assert _create(admin, schedule_type="cron").status_code == 422
    ok = _create(admin, schedule_type="cron", cron_expression="0 * * * *")
    assert ok.json()["airbyte"]["schedule_type"] == "cron"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source_key", "../../etc"),
        ("source_key", ".."),
        ("source_key", "a/b"),
        ("source_key", "/abs"),
        ("source_key", "a..b"),
        ("source_key", ".hidden"),
        ("source_key", "caf\u00e9"),
        ("source_key", "tab\tkey"),
        ("source_key", "nul\x00"),
        ("source_key", "\u202eevil"),
        ("bucket", "../outside"),
        ("bucket", "Acme/Logs"),
        ("bucket", ".staging"),
        ("prefix", "../"),
        ("prefix", "/abs/"),
        ("prefix", "a/../../b/"),
        ("prefix", "a\\b/"),
    ],
)
def test_hostile_path_parts_are_rejected(admin: httpx.Client, emu: Emulator, field: str, value: str) -> None:
    response = _create(admin, **{field: value})
    assert response.status_code == 422, response.text
    hosted = admin.post(
        "/v1/admin/hosted-sources", json={"source_key": "h", "name": "h", "dataset_id": "h", field: value}
    )
    assert hosted.status_code == 422
    assert emu.sources("acme") == []


def test_safe_prefix_lands_under_the_bucket(admin: httpx.Client, emu: Emulator) -> None:
    from .helpers import wait_run

    assert _create(admin, source_key="raw-stripe", prefix="airbyte/raw/").status_code == 200
    source_id = admin.get("/v1/admin/sources").json()["sources"][0]["source_id"]
    admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision",
        json={"source_configuration": {"api_key": "sk_test_x", "account_id": "acct_1"}},
    )
    admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection")
    run = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync").json()["run"]
    wait_run(admin, run["run_id"])
    files = list((emu.bucket_root / "acme-connectors" / "airbyte" / "raw" / "raw-stripe").rglob("*.jsonl"))
    assert len(files) == 3


def test_provision_errors_never_echo_secrets(admin: httpx.Client) -> None:
    source_id = _create(admin).json()["source"]["source_id"]
    url = f"/v1/admin/airbyte-sources/{source_id}/provision"
    cases = [
        {"source_configuration": {"api_key": "pk_" + SECRET, "account_id": "acct_1"}},  # pattern
        {"source_configuration": {"api_key": 12345, "account_id": SECRET}},  # type + pattern
        {"source_configuration": {"account_id": "acct_1"}},  # missing api_key
        {"source_configuration": SECRET},  # not an object
        {"source_configuration": [SECRET]},
        [SECRET],
    ]
    for body in cases:
        response = admin.post(url, json=body)
        assert response.status_code == 422, response.text
        assert SECRET not in response.text
        assert isinstance(response.json()["detail"], list)
    missing = admin.post(url, json={"source_configuration": {"account_id": "acct_1"}}).json()["detail"]
    assert missing == [
        {"loc": ["body", "source_configuration", "api_key"], "msg": "Field required", "type": "missing"}
    ]
    nested = _create(admin, source_key="hub", provider_key="hubspot").json()["source"]["source_id"]
    deep = admin.post(
        f"/v1/admin/airbyte-sources/{nested}/provision",
        json={
            "source_configuration": {
                "credentials": {"credentials_title": "Private App Credentials", "access_token": SECRET}
            }
        },
    )
    assert deep.status_code == 422 and SECRET not in deep.text
    assert deep.json()["detail"][0]["loc"] == ["body", "source_configuration", "credentials", "access_token"]


def test_credentials_are_never_returned(admin: httpx.Client, emu: Emulator) -> None:
    source_id = _create(admin).json()["source"]["source_id"]
    good = {"api_key": "sk_live_" + SECRET, "account_id": "acct_1"}
    provisioned = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": good}
    )
    everything = [
        provisioned.text,
        admin.get(f"/v1/admin/airbyte-sources/{source_id}").text,
        admin.get("/v1/admin/sources").text,
        json.dumps(emu.state()),
        json.dumps(emu.mutations()),
    ]
    assert all(SECRET not in text for text in everything)


def test_rejected_credential_marks_failed(admin: httpx.Client) -> None:
    source_id = _create(admin).json()["source"]["source_id"]
    response = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision",
        json={"source_configuration": {"api_key": "sk_test_invalid", "account_id": "acct_1"}},
    )
    assert response.json()["airbyte"]["credential_status"] == "failed"
    assert (
        admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection").json()["detail"]["code"]
        == "credentials_not_ready"
    )


def test_bad_json_and_bad_path_params(admin: httpx.Client) -> None:
    broken = admin.post(
        "/v1/admin/airbyte-sources", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    assert admin.post("/v1/admin/airbyte-sources/abc/sync").status_code == 422
    assert admin.post(f"/v1/admin/airbyte-sources/{10**30}/sync").status_code == 404
    assert admin.post("/v1/admin/airbyte-sources/1/sync", json={"trigger": "hourly"}).status_code == 422
    assert admin.get("/v1/ingest/runs", params={"status": "exploded"}).status_code == 422
    assert (
        admin.post(
            "/v1/ingest/sources/x/uploads/parts", json={"upload_session_id": "u", "part_numbers": []}
        ).status_code
        == 422
    )
    assert (
        admin.post(
            "/v1/ingest/sources/x/uploads/parts", json={"upload_session_id": "u" * 65, "part_numbers": [1]}
        ).status_code
        == 422
    )
    assert (
        admin.post(
            "/v1/ingest/sources/x/uploads/parts", json={"upload_session_id": "u", "part_numbers": [0]}
        ).status_code
        == 422
    )


def test_write_only_external_id_is_not_echoed(admin: httpx.Client) -> None:
    body = source_body(external_id="ext-" + SECRET)
    del body["bucket"]
    missing = admin.post("/v1/admin/airbyte-sources", json=body)
    assert missing.status_code == 422 and SECRET not in missing.text
    too_long = admin.post("/v1/admin/airbyte-sources", json=source_body(external_id=SECRET * 20))
    assert too_long.status_code == 422 and SECRET not in too_long.text
    created = admin.post("/v1/admin/airbyte-sources", json=source_body(external_id="ext-" + SECRET))
    assert created.json()["source"]["external_id_configured"] is True and SECRET not in created.text
