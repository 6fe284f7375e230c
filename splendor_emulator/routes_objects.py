"""Presigned object-store URLs (`upload_url` and part URLs): no Splendor auth, an HMAC signature instead,
and an `ETag` header on success, as S3 does. Errors come back as S3-style XML."""

import hashlib
import os
import tempfile
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from splendor_emulator import uploads
from splendor_emulator.auth import runtime_of
from splendor_emulator.store import UploadRec

router = APIRouter(prefix="/_objects", include_in_schema=False)


def _s3_error(status: int, code: str, message: str) -> Response:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


@router.put("/{bucket}/{key:path}")
async def put_object(
    request: Request,
    bucket: str,
    key: str,
    upload: Annotated[str, Query(max_length=64)] = "",
    exp: Annotated[str, Query(max_length=20)] = "",
    sig: Annotated[str, Query(max_length=128)] = "",
    part: Annotated[str, Query(max_length=6)] = "",
) -> Response:
    rt = runtime_of(request)
    if not uploads.verify_signature(rt, bucket, key, upload, part, exp, sig):
        return _s3_error(403, "SignatureDoesNotMatch", "The request signature does not match")
    if not exp.isdigit() or time.time() > int(exp):
        return _s3_error(403, "AccessDenied", "Request has expired")
    up = rt.store.get(UploadRec, upload)
    if up is None or up.completed_at is not None:
        return _s3_error(404, "NoSuchUpload", "The upload session does not exist or is already complete")
    part_number = int(part) if part else None
    if up.mode == "single":
        expected = up.content_type.split(";")[0].strip().lower()
        sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if sent != expected:
            return _s3_error(
                403, "SignatureDoesNotMatch", "content-type must match the signed required_headers"
            )
    limit = uploads.part_limit(up, part_number)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _s3_error(400, "EntityTooLarge", f"at most {limit} bytes may be sent to this URL")
    stage = uploads.staging_dir(rt, up.upload_session_id)
    stage.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    size = 0
    handle, name = tempfile.mkstemp(dir=stage, prefix="incoming-")
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise uploads.ObjectError(
                        400, "EntityTooLarge", f"at most {limit} bytes may be sent to this URL"
                    )
                digest.update(chunk)
                out.write(chunk)
        etag = uploads.accept_object(
            rt, up, part_number, stage / os.path.basename(name), size, digest.hexdigest()
        )
    except uploads.ObjectError as exc:
        if os.path.exists(name):
            os.unlink(name)
        return _s3_error(exc.status, exc.code, exc.message)
    return Response(status_code=200, headers={"ETag": etag})
