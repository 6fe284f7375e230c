"""Ingest runs, hosted uploads and log streaming (§3.5, §7.3, §7.4). Members may upload and stream logs."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse

from splendor_emulator import uploads
from splendor_emulator.auth import Admin, LogWriter, Member, runtime_of
from splendor_emulator.catalog import jsonl_bytes
from splendor_emulator.errors import ApiError, not_found
from splendor_emulator.models import (
    CompleteUploadRequest,
    HostedUploadReadiness,
    IngestRunItem,
    IngestRunList,
    IngestStatus,
    InitiateUploadRequest,
    LogBatch,
    LogsAccepted,
    SignPartsRequest,
    SignPartsResult,
    UploadCompleted,
    UploadSession,
)
from splendor_emulator.paths import object_path
from splendor_emulator.runtime import new_id
from splendor_emulator.store import IngestRec
from splendor_emulator.views import ingest_item

router = APIRouter(tags=["Sources & Ingest"])

SourceKey = Annotated[str, Path(min_length=1, max_length=128, description="The source's source_key")]


@router.get("/v1/ingest/runs", response_model=IngestRunList, summary="List ingest runs")
async def list_ingest_runs(
    request: Request,
    caller: Member,
    source_id: int | None = None,
    dataset_id: Annotated[str | None, Query(min_length=1)] = None,
    status: IngestStatus | None = None,
    include_non_current: bool = False,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> IngestRunList:
    rt = runtime_of(request)
    now = rt.now()
    items: list[IngestRunItem] = []
    for rec in sorted(rt.store.all(IngestRec), key=lambda r: (r.created_at, r.ingest_run_id)):
        if rec.tenant_id != caller.tenant_id:
            continue
        if (source_id is not None and rec.source_id != source_id) or (
            dataset_id is not None and rec.dataset_id != dataset_id
        ):
            continue
        item = ingest_item(rec, now)
        # A run replaced by a later one for the same object (a repaired failure) is not current.
        if item.status == "superseded" and not include_non_current and status != "superseded":
            continue
        if status is not None and item.status != status:
            continue
        items.append(item)
    return IngestRunList(runs=items[:limit] if limit else items)


@router.get("/v1/ingest/runs/{ingest_run_id}", response_model=IngestRunItem, summary="Get an ingest run")
async def get_ingest_run(request: Request, caller: Member, ingest_run_id: str) -> IngestRunItem:
    rt = runtime_of(request)
    return ingest_item(rt.ingest_run(caller.tenant_id, ingest_run_id), rt.now())


@router.post(
    "/v1/ingest/sources/{source_key}/uploads",
    response_model=UploadSession,
    summary="Initiate a hosted upload",
)
async def initiate_upload(
    request: Request, caller: Member, source_key: SourceKey, body: InitiateUploadRequest
) -> UploadSession:
    return uploads.initiate(runtime_of(request), caller.tenant_id, source_key, body, str(request.base_url))


@router.post(
    "/v1/ingest/sources/{source_key}/uploads/parts",
    response_model=SignPartsResult,
    summary="Sign upload parts",
)
async def sign_parts(
    request: Request, caller: Member, source_key: SourceKey, body: SignPartsRequest
) -> SignPartsResult:
    return uploads.sign_parts(
        runtime_of(request),
        caller.tenant_id,
        source_key,
        body.upload_session_id,
        body.part_numbers,
        str(request.base_url),
    )


@router.post(
    "/v1/ingest/sources/{source_key}/uploads/complete",
    response_model=UploadCompleted,
    summary="Complete a hosted upload",
)
async def complete_upload(
    request: Request, caller: Member, source_key: SourceKey, body: CompleteUploadRequest
) -> UploadCompleted:
    return uploads.complete(runtime_of(request), caller.tenant_id, source_key, body)


@router.get(
    "/v1/admin/hosted-uploads/{upload_session_id}/readiness",
    response_model=HostedUploadReadiness,
    summary="Get hosted upload readiness (admin)",
)
async def upload_readiness(
    request: Request, caller: Admin, upload_session_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> HostedUploadReadiness:
    rt = runtime_of(request)
    up = rt.upload(caller.tenant_id, upload_session_id)
    now = rt.now()
    ingest = rt.store.get(IngestRec, up.ingest_run_id)
    if ingest is None:
        raise not_found("Ingest run")
    item = ingest_item(ingest, now)
    return HostedUploadReadiness(
        **item.model_dump(),
        upload_status=uploads.upload_status(up, now),
        ingest_status=item.status,
    )


@router.post(
    "/v1/ingest/sources/{source_key}/logs",
    status_code=202,
    response_model=LogsAccepted,
    summary="Stream log records",
)
async def stream_logs(
    request: Request,
    caller: LogWriter,
    source_key: SourceKey,
    body: Annotated[LogBatch | list[dict[str, Any]], Body()],
) -> JSONResponse:
    rt = runtime_of(request)
    records = body.records if isinstance(body, LogBatch) else body
    if len(records) > 10_000:
        raise ApiError(413, "At most 10000 records per batch")
    src = rt.source_by_key(caller.tenant_id, source_key)
    if src is None:
        raise not_found("Source")
    if caller.identity.source_id is not None and caller.identity.source_id != src.source_id:
        raise ApiError(403, "This ingest token belongs to another source")
    fragment_id = new_id("frag")
    now = rt.now()
    key = f"{src.prefix}{src.source_key}/logs/{fragment_id}.jsonl"
    if records:
        path = object_path(rt.bucket_root, src.bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jsonl_bytes(records))
    with rt.store.lock:
        if records:
            rt.store.put(
                IngestRec(
                    ingest_run_id=new_id("ing"),
                    tenant_id=src.tenant_id,
                    dataset_id=src.dataset_id,
                    source_id=src.source_id,
                    input_kind="log_fragment",
                    bucket=src.bucket,
                    key=key,
                    documents=len(records),
                    created_at=now,
                    queued_at=now,
                    step_s=rt.config.ingest_seconds,
                    error_code=rt.faults.take_ingest_error(src.tenant_id, src.source_key),
                )
            )
        if caller.kind == "ingest_token":
            src.ingest_token_last_used_at = now
            rt.store.put(src)
    accepted = LogsAccepted(received=len(records), fragment_id=fragment_id)
    return JSONResponse(accepted.model_dump(), status_code=202)
