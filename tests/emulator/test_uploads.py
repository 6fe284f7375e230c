"""Hosted sources, uploads through presigned URLs served by the emulator, readiness, logs, ingest tokens."""

import hashlib
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from splendor_emulator import Emulator, running_emulator

from .conftest import ClientFactory
from .helpers import ADMIN, MEMBER, fast_config

HOSTED = {
    "source_key": "catalog",
    "name": "Product catalog",
    "dataset_id": "products",
    "source_type": "hosted",
}


@pytest.fixture
def small_parts() -> Iterator[Emulator]:
    """Multipart from 10 bytes up, in 4-byte parts, so tests upload tiny files."""
    with running_emulator(fast_config(upload_single_max_bytes=10, upload_part_size_bytes=4)) as emulator:
        yield emulator


def _client(emu: Emulator, token: str = ADMIN) -> httpx.Client:
    return httpx.Client(
        base_url=emu.base_url, headers={"Authorization": f"Bearer {token}", "X-Splendor-Tenant-Id": "acme"}
    )


def _wait_ready(client: httpx.Client, session: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        readiness = client.get(f"/v1/admin/hosted-uploads/{session}/readiness").json()
        if readiness["ingest_status"] in ("ready", "failed"):
            return readiness
        time.sleep(0.05)
    raise AssertionError(readiness)


def test_hosted_source_creation(admin: httpx.Client) -> None:
    body = HOSTED | {"semantic": {"image_embeddings": {"fields": ["photo_url"]}}}
    created = admin.post("/v1/admin/hosted-sources", json=body)
    assert created.status_code == 200
    source = created.json()
    assert (source["source_type"], source["bucket"], source["connector_id"]) == (
        "hosted",
        "acme-uploads",
        None,
    )
    assert source["semantic_config"]["image_embeddings"] == {"fields": ["photo_url"]}
    duplicate = admin.post("/v1/admin/hosted-sources", json=HOSTED)
    assert duplicate.status_code == 409 and duplicate.json()["detail"]["source_id"] == source["source_id"]
    assert admin.post("/v1/admin/hosted-sources", json=HOSTED | {"source_type": "airbyte"}).status_code == 422


def test_single_upload_by_a_member(emu: Emulator, admin: httpx.Client, client_for: ClientFactory) -> None:
    admin.post("/v1/admin/hosted-sources", json=HOSTED)
    member = client_for(MEMBER)
    payload = b"".join(
        json.dumps({"sku": f"sku-{i}", "title": f"Item {i}"}).encode() + b"\n" for i in range(5)
    )
    session = member.post(
        "/v1/ingest/sources/catalog/uploads",
        json={
            "content_type": "application/x-ndjson",
            "object_size_bytes": len(payload),
            "filename": "items.jsonl",
        },
    ).json()
    assert (
        session["upload_mode"] == "single"
        and session["upload_id"] is None
        and session["part_size_bytes"] is None
    )
    assert session["key"] == f"uploads/{session['upload_session_id']}/items.jsonl"
    assert session["required_headers"] == {"content-type": "application/x-ndjson"}

    raw = httpx.Client()  # no Splendor auth: presigned
    wrong_type = raw.put(session["upload_url"], content=payload, headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 403
    tampered = raw.put(
        session["upload_url"].replace("sig=", "sig=0"), content=payload, headers=session["required_headers"]
    )
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    put = raw.put(session["upload_url"], content=payload, headers=session["required_headers"])
    assert put.status_code == 200
    assert put.headers["etag"] == f'"{hashlib.md5(payload).hexdigest()}"'

    pending = admin.get(f"/v1/admin/hosted-uploads/{session['upload_session_id']}/readiness").json()
    assert (pending["upload_status"], pending["ingest_status"]) == ("pending", "uploading")

    done = member.post(
        "/v1/ingest/sources/catalog/uploads/complete",
        json={"upload_session_id": session["upload_session_id"]},
    )
    assert done.status_code == 200
    completed = done.json()
    assert completed == {
        "bucket": "acme-uploads",
        "dataset_id": "products",
        "etag": put.headers["etag"],
        "format": "jsonl",
        "key": session["key"],
        "source": "catalog",
        "source_id": completed["source_id"],
        "tenant_id": "acme",
    }
    # completing again is harmless (a retry after a lost response)
    assert (
        member.post(
            "/v1/ingest/sources/catalog/uploads/complete",
            json={"upload_session_id": session["upload_session_id"]},
        ).json()
        == completed
    )
    assert (emu.bucket_root / "acme-uploads" / session["key"]).read_bytes() == payload

    ready = _wait_ready(admin, session["upload_session_id"])
    assert ready["upload_status"] == "completed" and ready["documents"]["expected"] == 5
    assert (
        ready["upload_session_id"] == session["upload_session_id"] and ready["input_kind"] == "hosted_upload"
    )
    assert member.get(f"/v1/admin/hosted-uploads/{session['upload_session_id']}/readiness").status_code == 403
    raw.close()


def test_multipart_upload_with_etag_checks(small_parts: Emulator) -> None:
    client = _client(small_parts)
    client.post("/v1/admin/hosted-sources", json=HOSTED)
    payload = b"id,name\n1,a\n2,b\n3,c\n"  # 20 bytes → 5 parts of 4
    session = client.post(
        "/v1/ingest/sources/catalog/uploads",
        json={
            "content_type": "text/csv",
            "object_size_bytes": len(payload),
            "filename": "../../etc/passwd.csv",
        },
    ).json()
    assert session["upload_mode"] == "multipart" and session["upload_url"] is None
    assert session["part_size_bytes"] == 4 and session["upload_id"].startswith("mpu_")
    assert ".." not in session["key"] and session["key"].endswith("passwd.csv")
    sid = session["upload_session_id"]

    too_many = client.post(
        "/v1/ingest/sources/catalog/uploads/parts", json={"upload_session_id": sid, "part_numbers": [6]}
    )
    assert too_many.status_code == 422
    signed = client.post(
        "/v1/ingest/sources/catalog/uploads/parts",
        json={"upload_session_id": sid, "part_numbers": [1, 2, 3, 4, 5]},
    ).json()["parts"]
    assert [p["part_number"] for p in signed] == [1, 2, 3, 4, 5]
    raw = httpx.Client()
    etags = []
    for part in signed:
        chunk = payload[(part["part_number"] - 1) * 4 : part["part_number"] * 4]
        response = raw.put(part["upload_url"], content=chunk)
        assert response.status_code == 200
        etags.append(response.headers["etag"])
    oversized = raw.put(signed[0]["upload_url"], content=b"12345")
    assert oversized.status_code == 400 and b"EntityTooLarge" in oversized.content

    parts = [{"part_number": i + 1, "etag": etag} for i, etag in enumerate(etags)]
    bad = [*parts[:2], {"part_number": 3, "etag": '"0000"'}, *parts[3:]]
    rejected = client.post(
        "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": sid, "parts": bad}
    )
    assert rejected.status_code == 400 and rejected.json()["detail"]["code"] == "invalid_part"
    assert rejected.json()["detail"]["part_number"] == 3
    unordered = client.post(
        "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": sid, "parts": parts[::-1]}
    )
    assert unordered.status_code == 400 and unordered.json()["detail"]["code"] == "invalid_part_order"
    short = client.post(
        "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": sid, "parts": parts[:4]}
    )
    assert short.status_code == 409 and short.json()["detail"]["code"] == "upload_size_mismatch"
    missing = client.post("/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": sid})
    assert missing.status_code == 422

    done = client.post(
        "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": sid, "parts": parts}
    )
    assert done.status_code == 200 and done.json()["format"] == "csv"
    assert done.json()["etag"].endswith('-5"')
    assert (small_parts.bucket_root / "acme-uploads" / session["key"]).read_bytes() == payload
    assert _wait_ready(client, sid)["documents"]["expected"] == 3
    # once complete, presigned URLs stop working
    assert raw.put(signed[0]["upload_url"], content=b"1234").status_code == 404
    raw.close()
    client.close()


def test_upload_edge_cases(admin: httpx.Client, emu: Emulator) -> None:
    admin.post("/v1/admin/hosted-sources", json=HOSTED)
    # Empty files are accepted and ingest to ready with no documents.
    empty = admin.post(
        "/v1/ingest/sources/catalog/uploads", json={"content_type": "text/plain", "object_size_bytes": 0}
    ).json()
    assert empty["upload_mode"] == "single" and empty["key"].endswith("/data.txt")
    assert httpx.put(empty["upload_url"], content=b"", headers=empty["required_headers"]).status_code == 200
    assert (
        admin.post(
            "/v1/ingest/sources/catalog/uploads/complete",
            json={"upload_session_id": empty["upload_session_id"]},
        ).status_code
        == 200
    )
    assert _wait_ready(admin, empty["upload_session_id"])["documents"]["expected"] == 0

    # A huge declaration is just arithmetic: bigger parts keep the count within S3's 10,000.
    huge = admin.post(
        "/v1/ingest/sources/catalog/uploads",
        json={"content_type": "application/x-ndjson", "object_size_bytes": 4 * 1024**4},
    ).json()
    assert huge["upload_mode"] == "multipart" and huge["part_size_bytes"] * 10_000 >= 4 * 1024**4
    too_big = admin.post(
        "/v1/ingest/sources/catalog/uploads", json={"content_type": "x/y", "object_size_bytes": 10**15}
    )
    assert too_big.status_code == 422

    # Completing before uploading anything, and signing parts for a single upload, are conflicts.
    early = admin.post(
        "/v1/ingest/sources/catalog/uploads", json={"content_type": "text/plain", "object_size_bytes": 3}
    ).json()
    conflict = admin.post(
        "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": early["upload_session_id"]}
    )
    assert conflict.status_code == 409 and conflict.json()["detail"]["code"] == "upload_incomplete"
    not_multipart = admin.post(
        "/v1/ingest/sources/catalog/uploads/parts",
        json={"upload_session_id": early["upload_session_id"], "part_numbers": [1]},
    )
    assert not_multipart.status_code == 409
    assert (
        httpx.put(early["upload_url"], content=b"toolong", headers=early["required_headers"]).status_code
        == 400
    )

    assert (
        admin.post(
            "/v1/ingest/sources/nope/uploads", json={"content_type": "a/b", "object_size_bytes": 1}
        ).status_code
        == 404
    )
    assert (
        admin.post(
            "/v1/ingest/sources/catalog/uploads/complete", json={"upload_session_id": "ups_nope"}
        ).status_code
        == 404
    )
    assert admin.get("/v1/admin/hosted-uploads/ups_nope/readiness").status_code == 404
    assert (
        admin.post(
            "/v1/ingest/sources/catalog/uploads", json={"content_type": "", "object_size_bytes": -1}
        ).status_code
        == 422
    )
    assert not any(p.name.startswith("incoming-") for p in emu.bucket_root.rglob("*"))


def test_logs_with_bearer_and_ingest_token(
    admin: httpx.Client, client_for: ClientFactory, emu: Emulator
) -> None:
    source = admin.post(
        "/v1/admin/hosted-sources", json=HOSTED | {"source_key": "app-logs", "dataset_id": "app-logs"}
    ).json()
    records = [{"level": "error", "message": "boom", "service": "api"}, {"level": "info", "message": "ok"}]
    guided = client_for(MEMBER).post("/v1/ingest/sources/app-logs/logs", json={"records": records})
    assert guided.status_code == 202
    assert guided.json()["received"] == 2 and guided.json()["fragment_id"].startswith("frag_")

    assert source["ingest_token_configured"] is False
    assert client_for(MEMBER).post(f"/v1/admin/sources/{source['source_id']}/ingest-token").status_code == 403
    rotated = admin.post(f"/v1/admin/sources/{source['source_id']}/ingest-token").json()
    token = rotated["token"]
    assert token.startswith("sit_live_") and rotated["source_id"] == source["source_id"]
    recipe = client_for(token, tenant=None)
    bare = recipe.post("/v1/ingest/sources/app-logs/logs", json=records)  # bare array, no tenant header
    assert bare.status_code == 202 and bare.json()["received"] == 2
    assert recipe.get("/v1/admin/sources").status_code == 403  # scoped to logs of one source
    admin.post("/v1/admin/hosted-sources", json=HOSTED)
    assert recipe.post("/v1/ingest/sources/catalog/logs", json=records).status_code == 403

    listed = admin.get("/v1/admin/sources", params={"dataset_id": "app-logs"}).json()["sources"][0]
    assert listed["ingest_token_configured"] is True and listed["ingest_token_last_used_at"] is not None
    assert token not in json.dumps(listed)

    # Rotation invalidates the old token at once; revocation kills the new one.
    newer = admin.post(f"/v1/admin/sources/{source['source_id']}/ingest-token").json()["token"]
    assert recipe.post("/v1/ingest/sources/app-logs/logs", json=records).status_code == 401
    assert (
        client_for(newer, tenant=None).post("/v1/ingest/sources/app-logs/logs", json=records).status_code
        == 202
    )
    assert admin.delete(f"/v1/admin/sources/{source['source_id']}/ingest-token").status_code == 200
    assert (
        client_for(newer, tenant=None).post("/v1/ingest/sources/app-logs/logs", json=records).status_code
        == 401
    )

    fragments = list((emu.bucket_root / "acme-uploads" / "app-logs" / "logs").glob("*.jsonl"))
    assert len(fragments) == 3
    kinds = {r["input_kind"] for r in emu.ingest_runs("acme")}
    assert kinds == {"log_fragment"}
    assert admin.post("/v1/ingest/sources/app-logs/logs", json={"wrong": 1}).status_code == 422
    assert admin.post("/v1/ingest/sources/nope/logs", json=records).status_code == 404
