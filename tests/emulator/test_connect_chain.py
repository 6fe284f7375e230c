"""The "Connect a source" chain end to end, plus each endpoint's documented shapes and 409 codes."""

import json

import httpx

from splendor_emulator import Emulator

from .helpers import STRIPE_CONFIG, connected_source, source_body, wait_ingest_ready, wait_run


def test_providers_and_discovery(admin: httpx.Client) -> None:
    providers = admin.get("/v1/admin/connector-providers").json()["providers"]
    by_key = {p["provider_key"]: p for p in providers}
    assert len(providers) >= 6
    assert by_key["stripe"]["auth_mode"] == "api_key" and by_key["stripe"]["oauth_mode"] == "none"
    assert by_key["salesforce"]["oauth_mode"] == "airbyte"
    assert by_key["google-drive"]["oauth_mode"] == "splendor"
    assert by_key["stripe"]["default_streams"] == ["charges", "customers", "invoices"]

    discovery = admin.post("/v1/admin/connector-providers/stripe/airbyte-discovery").json()
    assert discovery["status"] == "api_key" and discovery["tenant_id"] == "acme"
    spec = discovery["connection_specification"]
    assert spec["properties"]["api_key"]["airbyte_secret"] is True
    assert spec["properties"]["api_key"]["pattern"] == "^sk_(test|live)_"
    oauth = admin.post("/v1/admin/connector-providers/salesforce/airbyte-discovery").json()
    assert (oauth["auth_mode"], oauth["supports_airbyte_oauth"], oauth["status"]) == ("oauth", True, "ready")
    assert admin.post("/v1/admin/connector-providers/nope/airbyte-discovery").status_code == 404


def test_catalog_search_and_discover(admin: httpx.Client) -> None:
    everything = admin.get("/v1/admin/airbyte-catalog").json()["source_definitions"]
    assert len(everything) >= 30
    found = admin.get("/v1/admin/airbyte-catalog", params={"q": "asana"}).json()["source_definitions"]
    assert [d["docker_repository"] for d in found] == ["airbyte/source-asana"]
    assert admin.get("/v1/admin/airbyte-catalog", params={"q": "no-such-thing"}).json() == {
        "source_definitions": []
    }
    definition = found[0]["source_definition_id"]
    discovered = admin.post(f"/v1/admin/airbyte-catalog/{definition}/discover").json()
    assert (
        discovered["oauth_mode"] == "none"
        and "api_token" in discovered["connection_specification"]["properties"]
    )
    drive = next(d for d in everything if d["name"] == "Google Drive")
    # Splendor-run OAuth is invisible to Airbyte's catalog: "splendor" never appears there.
    assert (
        admin.post(f"/v1/admin/airbyte-catalog/{drive['source_definition_id']}/discover").json()["oauth_mode"]
        == "none"
    )
    assert admin.post("/v1/admin/airbyte-catalog/unknown/discover").status_code == 404


def test_full_chain_lands_data_and_ingests(admin: httpx.Client, emu: Emulator) -> None:
    created = admin.post("/v1/admin/airbyte-sources", json=source_body())
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {"airbyte", "connector", "source"}
    source_id = body["source"]["source_id"]
    assert (
        body["source"]["source_type"] == "airbyte"
        and body["source"]["connector_id"] == body["connector"]["connector_id"]
    )
    assert body["airbyte"]["credential_status"] == "not_provisioned"
    assert body["airbyte"]["connection_status"] == "none"

    assert admin.post(f"/v1/admin/airbyte-sources/{source_id}/discover-schema").json()["detail"]["code"] == (
        "credentials_not_ready"
    )
    not_ready = admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection")
    assert not_ready.status_code == 409 and not_ready.json()["detail"]["code"] == "credentials_not_ready"

    provisioned = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": STRIPE_CONFIG}
    )
    assert provisioned.status_code == 200
    assert provisioned.json()["airbyte"]["credential_status"] == "ready"
    assert provisioned.json()["consent_url"] is None
    assert STRIPE_CONFIG["api_key"] not in provisioned.text

    schema = admin.post(f"/v1/admin/airbyte-sources/{source_id}/discover-schema").json()
    charges = next(s for s in schema["streams"] if s["name"] == "charges")
    assert {"name": "amount", "type": "integer"} in charges["fields"]
    assert charges["supported_sync_modes"] == ["full_refresh", "incremental"]

    no_connection = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"})
    assert no_connection.status_code == 409 and no_connection.json()["detail"]["code"] == "no_connection"

    connected = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/connection", json={"streams": ["charges", "refunds"]}
    )
    assert connected.json()["airbyte"]["connection_status"] == "active"
    assert connected.json()["airbyte"]["stream_config"] == {"streams": ["charges", "refunds"]}
    again = admin.post(f"/v1/admin/airbyte-sources/{source_id}/connection", json={"streams": ["customers"]})
    assert again.status_code == 200 and again.json()["airbyte"] == connected.json()["airbyte"]

    no_data = admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest")
    assert no_data.status_code == 409 and no_data.json()["detail"]["code"] == "no_landed_data"

    started = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync", json={"trigger": "manual"}).json()[
        "run"
    ]
    assert started["status"] == "pending" and started["completed_at"] is None
    final = wait_run(admin, started["run_id"])[-1]
    assert final["status"] == "succeeded"
    assert admin.get(f"/v1/admin/airbyte-runs/{started['run_id']}").json() == {"run": final}

    # Files really exist and line counts add up to records_synced; bytes are the file sizes.
    folder = emu.bucket_root / "acme-connectors" / "stripe"
    files = sorted(folder.glob("*/run-*.jsonl"))
    assert [f.parent.name for f in files] == ["charges", "refunds"]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == final["records_synced"] == 14
    assert sum(f.stat().st_size for f in files) == final["bytes_synced"]
    assert {"id", "amount", "currency", "status"} <= set(lines[0])

    ingest = admin.post(f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest").json()["ingest_runs"]
    assert len(ingest) == 2 and {i["connector_run_id"] for i in ingest} == {started["run_id"]}
    assert {i["key"] for i in ingest} == {
        f"stripe/{s}/run-{started['run_id']}.jsonl" for s in ("charges", "refunds")
    }
    twice = admin.post(
        f"/v1/admin/airbyte-sources/{source_id}/enqueue-ingest", json={"run_id": started["run_id"]}
    )
    assert sorted(i["ingest_run_id"] for i in twice.json()["ingest_runs"]) == sorted(
        i["ingest_run_id"] for i in ingest
    )

    ready = wait_ingest_ready(admin, [i["ingest_run_id"] for i in ingest])
    assert all(i["status"] == "ready" and i["ready_for"]["semantic_search"] for i in ready)
    assert sum(i["documents"]["expected"] for i in ready) == 14
    listed = admin.get("/v1/ingest/runs", params={"source_id": source_id, "status": "ready"}).json()["runs"]
    assert len(listed) == 2
    assert admin.get("/v1/ingest/runs", params={"dataset_id": "other"}).json() == {"runs": []}
    assert len(emu.ingest_runs("acme")) == 2


def test_get_source_and_list_and_update(admin: httpx.Client) -> None:
    source_id = connected_source(admin)
    got = admin.get(f"/v1/admin/airbyte-sources/{source_id}").json()
    assert got["airbyte"]["airbyte_connection_id"] == f"conn_{source_id}"
    listed = admin.get("/v1/admin/sources").json()["sources"]
    assert [s["source_key"] for s in listed] == ["stripe"]
    assert admin.get("/v1/admin/sources", params={"dataset_id": "stripe"}).json()["sources"] == listed
    assert admin.get("/v1/admin/sources", params={"dataset_id": "x"}).json() == {"sources": []}

    update = {
        "search_config": {"text_fields": [{"field": "description", "boost": 2, "natural_language": True}]},
        "semantic_config": {"document_embeddings": {"fields": [{"field": "description", "max_chars": 4000}]}},
        "retention_days": 30,
    }
    updated = admin.put(f"/v1/admin/sources/{source_id}", json=update).json()
    assert updated["search_config"]["text_fields"][0]["field"] == "description"
    assert updated["retention_days"] == 30 and updated["name"] == "Stripe"  # untouched fields stay
    assert admin.put(f"/v1/admin/sources/{source_id}", json={"name": None}).status_code == 422
    disabled = admin.put(f"/v1/admin/sources/{source_id}", json={"enabled": False}).json()
    assert disabled["enabled"] is False
    state = admin.get(f"/v1/admin/airbyte-sources/{source_id}").json()["airbyte"]
    assert state["connection_status"] == "inactive"
    blocked = admin.post(f"/v1/admin/airbyte-sources/{source_id}/sync")
    assert blocked.status_code == 409 and blocked.json()["detail"]["code"] == "connection_inactive"
    assert admin.put(f"/v1/admin/sources/{source_id}", json={"enabled": True}).status_code == 200
    assert admin.put("/v1/admin/sources/999999", json={"name": "x"}).status_code == 404


def test_duplicate_key_unknown_provider_and_long_tail(admin: httpx.Client) -> None:
    first = admin.post("/v1/admin/airbyte-sources", json=source_body()).json()
    duplicate = admin.post("/v1/admin/airbyte-sources", json=source_body(provider_key="hubspot"))
    assert duplicate.status_code == 409
    assert duplicate.json()["detail"]["code"] == "source_key_exists"
    assert duplicate.json()["detail"]["source_id"] == first["source"]["source_id"]
    assert isinstance(duplicate.json()["detail"]["message"], str)

    assert (
        admin.post("/v1/admin/airbyte-sources", json=source_body("x", provider_key="nope")).status_code == 404
    )

    definitions = admin.get("/v1/admin/airbyte-catalog", params={"q": "linear"}).json()["source_definitions"]
    body = source_body("linear-issues") | {"source_definition_id": definitions[0]["source_definition_id"]}
    del body["provider_key"]
    long_tail = admin.post("/v1/admin/airbyte-sources", json=body)
    assert long_tail.status_code == 200
    assert long_tail.json()["airbyte"]["provider_key"] == "linear"
    assert long_tail.json()["airbyte"]["stream_config"] == {"streams": ["issues"]}
    neither = source_body("y")
    del neither["provider_key"]
    assert admin.post("/v1/admin/airbyte-sources", json=neither).status_code == 422


def test_unknown_stream_is_422(admin: httpx.Client) -> None:
    response = admin.post("/v1/admin/airbyte-sources", json=source_body(streams=["charges", "nope"]))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "streams", 1]
