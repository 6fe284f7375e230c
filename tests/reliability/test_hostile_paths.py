"""Hostile values that end up in file paths inside the emulator: nothing may land outside bucket_root.

Keys, buckets, prefixes, stream names and upload file names are all sent straight to the HTTP API
(bypassing the client's and the spec's own validation), then every file under the bucket root's
parent folder is listed before and after.
"""

from pathlib import Path
from typing import Any

import httpx
import pytest

from splendor_emulator import Emulator
from tests.reliability.conftest import RemoteState

ACME = {"Authorization": "Bearer acme-admin-token", "X-Splendor-Tenant-Id": "acme"}
BASE = {
    "provider_key": "stripe",
    "connector_key": "stripe",
    "connector_name": "Stripe",
    "source_name": "s",
    "dataset_id": "d",
    "iam_role_arn": "arn:aws:iam::123456789012:role/acme",
}


def files_around(root: Path) -> set[Path]:
    return {p for p in root.parent.rglob("*") if p.is_file() and not p.is_relative_to(root)}


HOSTILE_SOURCES: list[tuple[str, dict[str, Any], str]] = [
    ("key-traversal", {"source_key": "../../escape"}, "source_key"),
    ("key-dotdot", {"source_key": ".."}, "source_key"),
    ("bucket-dotdot", {"bucket": ".."}, "bucket"),
    ("bucket-traversal", {"bucket": "../../tmp"}, "bucket"),
    ("prefix-traversal", {"prefix": "../../"}, "prefix"),
    ("prefix-absolute", {"prefix": "/etc/"}, "prefix"),
    ("prefix-inner-traversal", {"prefix": "a/../../b/"}, "prefix"),
    ("key-unicode", {"source_key": "clé-ünïcode"}, "source_key"),
    ("key-nul", {"source_key": "nul\x00byte"}, "source_key"),
]


@pytest.mark.parametrize(("case", "overrides", "field"), HOSTILE_SOURCES, ids=[c[0] for c in HOSTILE_SOURCES])
async def test_hostile_source_paths_are_refused(
    emulator: Emulator, case: str, overrides: dict[str, Any], field: str
) -> None:
    remote = RemoteState(emulator, attempts=False)
    outside = files_around(emulator.bucket_root)
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=ACME) as http:
        body = {**BASE, "source_key": "ok-key", "bucket": "acme-connectors", **overrides}
        response = await http.post("/v1/admin/airbyte-sources", json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
    remote.assert_unchanged()
    assert files_around(emulator.bucket_root) == outside


@pytest.mark.parametrize(
    "filename",
    ["../../../../escape.jsonl", "..\\..\\escape.jsonl", "/etc/passwd", "résumé/../../x.jsonl", ".."],
    ids=["dotdot", "backslashes", "absolute", "unicode-dotdot", "only-dots"],
)
async def test_hostile_upload_names_stay_inside_the_bucket(emulator: Emulator, filename: str) -> None:
    outside = files_around(emulator.bucket_root)
    key = f"hostile-{abs(hash(filename)) % 10**8}"
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=ACME) as http:
        await http.post(
            "/v1/admin/hosted-sources",
            json={"source_key": key, "name": "n", "dataset_id": "d", "source_type": "hosted"},
        )
        session = await http.post(
            f"/v1/ingest/sources/{key}/uploads",
            json={"content_type": "application/jsonl", "object_size_bytes": 9, "filename": filename},
        )
        upload = session.raise_for_status().json()
        assert ".." not in upload["key"].split("/") and not upload["key"].startswith("/")
        put = await httpx.AsyncClient().put(
            upload["upload_url"], content=b'{"a": 1}\n', headers=upload["required_headers"]
        )
        assert put.status_code == 200
        # A signature for one key does not open another: tamper with the path.
        tampered = upload["upload_url"].replace(upload["key"], "../../../escaped.jsonl")
        refused = await httpx.AsyncClient().put(tampered, content=b"x", headers=upload["required_headers"])
        assert refused.status_code in (400, 403, 404)
    assert files_around(emulator.bucket_root) == outside
    landed = [
        p for p in emulator.bucket_root.rglob("*") if p.is_file() and upload["upload_session_id"] in str(p)
    ]
    assert landed and all(p.resolve().is_relative_to(emulator.bucket_root.resolve()) for p in landed)
