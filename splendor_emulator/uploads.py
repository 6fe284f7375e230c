"""Hosted uploads: sessions, presigned object URLs served by the emulator itself, parts, and completion.

Bytes are staged under `{bucket_root}/.staging/{upload_session_id}/` (a name no bucket can take, since
bucket names start with a letter or digit) and assembled into `{bucket_root}/{bucket}/{key}` on completion.
Sizes are checked from the declaration and while streaming, so a huge declared size never allocates
anything."""

import hashlib
import hmac
import math
import shutil
from pathlib import Path
from urllib.parse import quote, urlencode

from splendor_emulator.errors import ApiError, conflict, invalid, not_found
from splendor_emulator.models import (
    CompleteUploadRequest,
    InitiateUploadRequest,
    SignedPart,
    SignPartsResult,
    UploadCompleted,
    UploadSession,
)
from splendor_emulator.paths import object_path, safe_filename
from splendor_emulator.runtime import Runtime, new_id
from splendor_emulator.store import IngestRec, PartRec, SourceRec, UploadRec
from splendor_emulator.views import ts

S3_MAX_PARTS = 10_000
S3_MIN_PART_BYTES = 5 * 1024 * 1024
STAGING = ".staging"

_FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".txt": "text", ".log": "text",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".gif": "image", ".webp": "image", ".pdf": "pdf",
}  # fmt: skip
_CONTENT_TYPES = {
    "application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json": "json",
    "text/csv": "csv", "text/plain": "text", "application/pdf": "pdf",
}  # fmt: skip
_EXTENSIONS = {
    "jsonl": ".jsonl",
    "json": ".json",
    "csv": ".csv",
    "text": ".txt",
    "pdf": ".pdf",
    "image": ".bin",
}


def detect_format(filename: str | None, content_type: str) -> str:
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix in _FORMATS:
            return _FORMATS[suffix]
    base = content_type.split(";")[0].strip().lower()
    if base.startswith("image/"):
        return "image"
    return _CONTENT_TYPES.get(base, "binary")


def _signature(secret: str, *fields: str) -> str:
    return hmac.new(secret.encode(), "|".join(fields).encode(), hashlib.sha256).hexdigest()[:40]


def presigned_url(rt: Runtime, base_url: str, up: UploadRec, part: int | None) -> str:
    exp = str(int(up.expires_at))
    part_text = "" if part is None else str(part)
    sig = _signature(rt.config.signing_secret, "PUT", up.bucket, up.key, up.upload_session_id, part_text, exp)
    query = {"upload": up.upload_session_id, "exp": exp, "sig": sig}
    if part is not None:
        query["part"] = part_text
    return f"{base_url.rstrip('/')}/_objects/{up.bucket}/{quote(up.key)}?{urlencode(query)}"


def verify_signature(rt: Runtime, bucket: str, key: str, upload: str, part: str, exp: str, sig: str) -> bool:
    expected = _signature(rt.config.signing_secret, "PUT", bucket, key, upload, part, exp)
    return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace"))


def staging_dir(rt: Runtime, upload_session_id: str) -> Path:
    return rt.bucket_root / STAGING / upload_session_id


def _source_for(rt: Runtime, tenant: str, source_key: str) -> SourceRec:
    src = rt.source_by_key(tenant, source_key)
    if src is None:
        raise not_found("Source")
    return src


def initiate(
    rt: Runtime, tenant: str, source_key: str, body: InitiateUploadRequest, base_url: str
) -> UploadSession:
    src = _source_for(rt, tenant, source_key)
    cfg = rt.config
    size = body.object_size_bytes
    if size > cfg.upload_max_object_bytes:
        raise invalid(
            ["body", "object_size_bytes"], f"objects are limited to {cfg.upload_max_object_bytes} bytes"
        )
    mode = "single" if size <= cfg.upload_single_max_bytes else "multipart"
    # Like S3 clients, grow the part size when the configured one would need more than 10,000 parts.
    part_size = (
        max(cfg.upload_part_size_bytes, math.ceil(size / S3_MAX_PARTS)) if mode == "multipart" else None
    )
    fmt = detect_format(body.filename, body.content_type)
    session_id = new_id("ups")
    name = safe_filename(body.filename, "data" + _EXTENSIONS.get(fmt, ".bin"))
    now = rt.now()
    up = UploadRec(
        upload_session_id=session_id,
        tenant_id=tenant,
        source_id=src.source_id,
        source_key=src.source_key,
        dataset_id=src.dataset_id,
        mode=mode,
        bucket=src.bucket,
        key=f"uploads/{session_id}/{name}",
        content_type=body.content_type,
        object_size_bytes=size,
        filename=body.filename,
        format=fmt,
        upload_id=f"mpu_{rt.store.next_id('multipart')}" if mode == "multipart" else None,
        part_size_bytes=part_size,
        created_at=now,
        expires_at=now + cfg.presign_ttl_seconds,
        ingest_run_id=new_id("ing"),
    )
    with rt.store.lock:
        rt.store.put(
            IngestRec(
                ingest_run_id=up.ingest_run_id,
                tenant_id=tenant,
                dataset_id=src.dataset_id,
                source_id=src.source_id,
                upload_session_id=session_id,
                input_kind="hosted_upload",
                bucket=up.bucket,
                key=up.key,
                created_at=now,
                step_s=cfg.ingest_seconds,
            )
        )
        rt.store.put(up)
    return UploadSession(
        upload_session_id=session_id,
        upload_mode=mode,
        bucket=up.bucket,
        key=up.key,
        expires_at=ts(up.expires_at),
        upload_url=presigned_url(rt, base_url, up, None) if mode == "single" else None,
        upload_id=up.upload_id,
        part_size_bytes=part_size,
        required_headers={"content-type": body.content_type} if mode == "single" else {},
    )


def _open_session(rt: Runtime, tenant: str, source_key: str, session_id: str) -> UploadRec:
    up = rt.upload(tenant, session_id)
    if up.source_key != source_key:
        raise not_found("Upload session")
    return up


def sign_parts(
    rt: Runtime, tenant: str, source_key: str, session_id: str, numbers: list[int], base_url: str
) -> SignPartsResult:
    up = _open_session(rt, tenant, source_key, session_id)
    if up.mode != "multipart":
        raise conflict("upload_not_multipart", "This upload session is in single mode; PUT to its upload_url")
    if up.completed_at is not None:
        raise conflict("upload_completed", "This upload session is already complete")
    assert up.part_size_bytes is not None
    total = max(1, math.ceil(up.object_size_bytes / up.part_size_bytes))
    for index, number in enumerate(numbers):
        if number > total:
            raise invalid(["body", "part_numbers", index], f"this upload has {total} parts")
    return SignPartsResult(
        parts=[
            SignedPart(
                part_number=n, upload_url=presigned_url(rt, base_url, up, n), expires_at=ts(up.expires_at)
            )
            for n in numbers
        ]
    )


class ObjectError(Exception):
    """An S3-style error for the presigned PUT endpoint."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def part_limit(up: UploadRec, part: int | None) -> int:
    """The most bytes a PUT to this URL may carry."""
    if part is None:
        return up.object_size_bytes
    assert up.part_size_bytes is not None
    return up.part_size_bytes


def accept_object(rt: Runtime, up: UploadRec, part: int | None, staged: Path, size: int, md5: str) -> str:
    """Record a staged single object or part; returns the quoted ETag."""
    etag = f'"{md5}"'
    with rt.store.lock:
        current = rt.store.get(UploadRec, up.upload_session_id)
        if current is None or current.completed_at is not None:
            staged.unlink(missing_ok=True)
            raise ObjectError(404, "NoSuchUpload", "The upload session does not exist or is already complete")
        final = staging_dir(rt, up.upload_session_id) / f"part-{part or 0}"
        staged.replace(final)
        current.parts[part or 0] = PartRec(etag=etag, size=size)
        rt.store.put(current)
    return etag


def _normalise_etag(etag: str) -> str:
    return etag.strip().strip('"')


def _count_documents(path: Path, fmt: str) -> int:
    if fmt not in ("jsonl", "csv", "text"):
        return 1 if path.stat().st_size > 0 else 0
    lines = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                lines += 1
    return max(lines - 1, 0) if fmt == "csv" else lines


def complete(rt: Runtime, tenant: str, source_key: str, body: CompleteUploadRequest) -> UploadCompleted:
    with rt.store.lock:
        up = _open_session(rt, tenant, source_key, body.upload_session_id)
        done = UploadCompleted(
            bucket=up.bucket,
            dataset_id=up.dataset_id,
            etag=up.etag,
            format=up.format,
            key=up.key,
            source=up.source_key,
            source_id=up.source_id,
            tenant_id=tenant,
        )
        if up.completed_at is not None:
            return done  # completing twice (a retry after a lost response) changes nothing
        now = rt.now()
        if now > up.expires_at:
            raise conflict("upload_expired", "The upload session has expired; initiate a new upload")
        if up.mode == "single":
            order = [0]
            if 0 not in up.parts:
                raise conflict("upload_incomplete", "No object has been uploaded to upload_url yet")
        else:
            if not body.parts:
                raise invalid(["body", "parts"], "parts are required to complete a multipart upload")
            order = [p.part_number for p in body.parts]
            if order != sorted(set(order)):
                raise ApiError(
                    400,
                    {"code": "invalid_part_order", "message": "parts must be in ascending order, once each"},
                )
            for index, claimed in enumerate(body.parts):
                stored = up.parts.get(claimed.part_number)
                if stored is None or _normalise_etag(stored.etag) != _normalise_etag(claimed.etag):
                    raise ApiError(
                        400,
                        {
                            "code": "invalid_part",
                            "message": f"part {claimed.part_number} is missing or its ETag does not match",
                            "part_number": claimed.part_number,
                        },
                    )
                if index < len(order) - 1 and stored.size < min(S3_MIN_PART_BYTES, up.part_size_bytes or 0):
                    raise ApiError(
                        400,
                        {"code": "entity_too_small", "message": f"part {claimed.part_number} is too small"},
                    )
        total = sum(up.parts[n].size for n in order)
        if total != up.object_size_bytes:
            raise conflict(
                "upload_size_mismatch",
                f"uploaded {total} bytes but the session declared {up.object_size_bytes}",
                uploaded_bytes=total,
                declared_bytes=up.object_size_bytes,
            )
        target = object_path(rt.bucket_root, up.bucket, up.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = staging_dir(rt, up.upload_session_id)
        with target.open("wb") as out:
            for number in order:
                with (stage / f"part-{number}").open("rb") as part_file:
                    shutil.copyfileobj(part_file, out, 1024 * 1024)
        if up.mode == "single":
            etag = up.parts[0].etag
        else:
            digest = hashlib.md5(b"".join(bytes.fromhex(_normalise_etag(up.parts[n].etag)) for n in order))
            etag = f'"{digest.hexdigest()}-{len(order)}"'
        shutil.rmtree(stage, ignore_errors=True)
        up.completed_at = now
        up.etag = etag
        rt.store.put(up)
        ingest = rt.store.get(IngestRec, up.ingest_run_id)
        if ingest is not None:
            ingest.etag = etag
            ingest.documents = _count_documents(target, up.format)
            ingest.queued_at = now
            ingest.error_code = rt.faults.take_ingest_error(tenant, source_key)
            rt.store.put(ingest)
        done.etag = etag
        return done


def upload_status(up: UploadRec, now: float) -> str:
    if up.completed_at is not None:
        return "completed"
    return "expired" if now > up.expires_at else "pending"
