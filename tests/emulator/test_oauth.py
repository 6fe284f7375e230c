"""OAuth through the emulator's consent page: Airbyte-run (secret_id + oauth/complete) and Splendor-run."""

from urllib.parse import parse_qs, urlsplit

import httpx

from .conftest import ClientFactory
from .helpers import source_body


def _create(client: httpx.Client, provider: str) -> int:
    created = client.post("/v1/admin/airbyte-sources", json=source_body(provider, provider_key=provider))
    assert created.status_code == 200, created.text
    source_id: int = created.json()["source"]["source_id"]
    return source_id


def test_airbyte_oauth_with_single_use_secret(admin: httpx.Client, client_for: ClientFactory) -> None:
    source_id = _create(admin, "salesforce")
    provisioned = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": {}}
    )
    assert provisioned.status_code == 200
    body = provisioned.json()
    assert body["airbyte"]["credential_status"] == "pending_oauth"
    consent_url = body["consent_url"]
    assert consent_url.startswith(f"{admin.base_url}/_emulator/oauth/consent/")

    browser = client_for(None, tenant=None)
    page = browser.get(consent_url)
    assert page.status_code == 200 and "Approve" in page.text and "Salesforce" in page.text

    # An admin approving in a browser: follow the redirect to the emulator's "done" page.
    done = browser.get(
        consent_url, params={"approve": "true"}, follow_redirects=True, headers={"Accept": "application/json"}
    )
    assert done.status_code == 200
    secret_id = done.json()["secret_id"]
    assert secret_id.startswith("sec_")
    # The same link cannot be approved twice.
    assert browser.get(consent_url, params={"approve": "true"}).status_code == 410

    assert admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection").json()["detail"]["code"] == (
        "credentials_not_ready"
    )
    unknown = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/oauth/complete", json={"secret_id": "sec_nope"}
    )
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "secret_id"]

    completed = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/oauth/complete", json={"secret_id": secret_id}
    )
    assert completed.status_code == 200
    assert completed.json()["airbyte"]["credential_status"] == "ready"
    assert set(completed.json()) == {"airbyte", "source"}
    reused = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/oauth/complete", json={"secret_id": secret_id}
    )
    assert reused.status_code == 422 and "already been used" in reused.json()["detail"][0]["msg"]
    assert admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection").status_code == 200


def test_redirect_uri_receives_secret_id(admin: httpx.Client, client_for: ClientFactory) -> None:
    source_id = _create(admin, "slack")
    consent_url = admin.post(f"/v1/admin/airbyte-sources/{source_id}/provision").json()["consent_url"]
    redirect = client_for(None, tenant=None).get(
        consent_url, params={"approve": "true", "redirect_uri": "https://app.example.com/cb?x=1"}
    )
    assert redirect.status_code == 302
    target = urlsplit(redirect.headers["location"])
    assert (target.netloc, target.path) == ("app.example.com", "/cb")
    query = parse_qs(target.query)
    assert query["x"] == ["1"] and query["secret_id"][0].startswith("sec_")
    # the HTML done page shows the secret id for a human to paste
    done = client_for(None, tenant=None).get(
        "/_emulator/oauth/done", params={"secret_id": query["secret_id"][0]}
    )
    assert query["secret_id"][0] in done.text


def test_secret_of_another_source_is_rejected(admin: httpx.Client, client_for: ClientFactory) -> None:
    first, second = _create(admin, "salesforce"), _create(admin, "slack")
    url = admin.post(f"/v1/admin/airbyte-sources/{first}/provision").json()["consent_url"]
    secret = client_for(None, tenant=None).get(
        url, params={"approve": "true"}, follow_redirects=True, headers={"Accept": "application/json"}
    )
    response = admin.post(
        f"/v1/admin/airbyte-sources/{second}/oauth/complete", json={"secret_id": secret.json()["secret_id"]}
    )
    assert response.status_code == 422


def test_denied_consent_keeps_pending(admin: httpx.Client, client_for: ClientFactory) -> None:
    source_id = _create(admin, "salesforce")
    url = admin.post(f"/v1/admin/airbyte-sources/{source_id}/provision").json()["consent_url"]
    denied = client_for(None, tenant=None).get(
        url, params={"approve": "false"}, follow_redirects=True, headers={"Accept": "application/json"}
    )
    assert denied.json()["error"] == "access_denied"
    state = admin.get(f"/v1/admin/airbyte-sources/{source_id}").json()["airbyte"]
    assert state["credential_status"] == "pending_oauth"


def test_splendor_oauth_becomes_ready_on_approval(admin: httpx.Client, client_for: ClientFactory) -> None:
    source_id = _create(admin, "google-drive")
    bad = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision",
        json={"source_configuration": {"folder_url": "ftp://x"}},
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "folder_url"
    provisioned = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision",
        json={"source_configuration": {"folder_url": "https://drive.google.com/drive/folders/abc"}},
    ).json()
    assert provisioned["airbyte"]["credential_status"] == "pending_oauth"
    assert provisioned["airbyte"]["oauth_mode"] == "splendor"
    done = client_for(None, tenant=None).get(
        provisioned["consent_url"],
        params={"approve": "true"},
        follow_redirects=True,
        headers={"Accept": "application/json"},
    )
    assert done.json()["status"] == "ready" and done.json()["secret_id"] is None
    state = admin.get(f"/v1/admin/airbyte-sources/{source_id}").json()["airbyte"]
    assert state["credential_status"] == "ready"
    assert admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection").status_code == 200


def test_unknown_consent_state(client_for: ClientFactory) -> None:
    browser = client_for(None, tenant=None)
    assert browser.get("/_emulator/oauth/consent/nope").status_code == 404
    assert browser.get("/_emulator/oauth/consent/nope", params={"approve": "true"}).status_code == 404
    assert (
        browser.get(
            "/_emulator/oauth/consent/x", params={"approve": "true", "redirect_uri": "javascript:x"}
        ).status_code
        == 400
    )
