"""Sources: list, partial update, hosted sources and ingest tokens (§0, §4.10, §7.1, §7.2, §7.5)."""

import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from splendor_emulator.auth import Admin, Member, runtime_of
from splendor_emulator.errors import ApiError, conflict
from splendor_emulator.models import (
    CreateHostedSourceRequest,
    IngestTokenResult,
    IngestTokenRevoked,
    SourceItem,
    SourceList,
    UpdateSourceRequest,
)
from splendor_emulator.store import SourceRec, token_hash
from splendor_emulator.views import source_item, ts

router = APIRouter(tags=["Sources & Ingest"])

SourceId = Annotated[int, Path(description="Splendor source id")]


@router.get("/v1/admin/sources", response_model=SourceList, summary="List sources")
async def list_sources(
    request: Request, caller: Member, dataset_id: Annotated[str | None, Query(min_length=1)] = None
) -> SourceList:
    rt = runtime_of(request)
    found = [
        s
        for s in rt.store.all(SourceRec)
        if s.tenant_id == caller.tenant_id and (dataset_id is None or s.dataset_id == dataset_id)
    ]
    return SourceList(sources=[source_item(s) for s in sorted(found, key=lambda s: s.source_id)])


@router.put("/v1/admin/sources/{source_id}", response_model=SourceItem, summary="Update a source")
async def update_source(
    request: Request, caller: Admin, source_id: SourceId, body: UpdateSourceRequest
) -> SourceItem:
    rt = runtime_of(request)
    with rt.store.lock:
        src = rt.source(caller.tenant_id, source_id)
        for name in body.model_fields_set:
            value = getattr(body, name)
            if name in ("search_config", "semantic_config") and value is not None:
                value = value.model_dump(mode="json", exclude_none=True)
            setattr(src, name, value)
        src.updated_at = rt.now()
        rt.store.put(src)
        return source_item(src)


@router.post("/v1/admin/hosted-sources", response_model=SourceItem, summary="Create a hosted source")
async def create_hosted_source(
    request: Request, caller: Admin, body: CreateHostedSourceRequest
) -> SourceItem:
    rt = runtime_of(request)
    semantic = body.semantic_config.model_dump(mode="json", exclude_none=True)
    if body.semantic is not None and body.semantic.image_embeddings is not None:
        semantic["image_embeddings"] = body.semantic.image_embeddings.model_dump(mode="json")
    with rt.store.lock:
        existing = rt.source_by_key(caller.tenant_id, body.source_key)
        if existing is not None:
            raise conflict(
                "source_key_exists",
                f"A source with key '{body.source_key}' already exists in this tenant",
                source_id=existing.source_id,
            )
        now = rt.now()
        src = SourceRec(
            source_id=rt.store.next_id("source"),
            tenant_id=caller.tenant_id,
            source_key=body.source_key,
            source_type="hosted",
            name=body.name,
            dataset_id=body.dataset_id,
            bucket=body.bucket or f"{caller.tenant_id.lower()}-uploads",
            prefix=body.prefix,
            retention_days=body.retention_days,
            parse_config=body.parse_config,
            transform_config=body.transform_config,
            search_config=body.search_config.model_dump(mode="json", exclude_none=True),
            semantic_config=semantic,
            created_at=now,
            updated_at=now,
        )
        rt.add_source(src)
        return source_item(src)


@router.post(
    "/v1/admin/sources/{source_id}/ingest-token",
    response_model=IngestTokenResult,
    summary="Rotate an ingest token",
)
async def rotate_ingest_token(request: Request, caller: Admin, source_id: SourceId) -> IngestTokenResult:
    rt = runtime_of(request)
    token = f"sit_live_{secrets.token_hex(16)}"
    with rt.store.lock:
        src = rt.source(caller.tenant_id, source_id)
        now = rt.now()
        # The previous token stops working at once: only the new hash is kept.
        src.ingest_token_hash = token_hash(token)
        src.ingest_token_created_at = now
        src.ingest_token_last_used_at = None
        src.ingest_token_revoked_at = None
        src.updated_at = now
        rt.store.put(src)
    return IngestTokenResult(source_id=source_id, token=token, created_at=ts(now))


@router.delete(
    "/v1/admin/sources/{source_id}/ingest-token",
    response_model=IngestTokenRevoked,
    summary="Revoke an ingest token [ASSUMED]",
)
async def revoke_ingest_token(request: Request, caller: Admin, source_id: SourceId) -> IngestTokenRevoked:
    rt = runtime_of(request)
    with rt.store.lock:
        src = rt.source(caller.tenant_id, source_id)
        if src.ingest_token_hash is None:
            raise ApiError(404, "Source has no ingest token")
        now = rt.now()
        src.ingest_token_revoked_at = src.ingest_token_revoked_at or now
        src.updated_at = now
        rt.store.put(src)
        assert src.ingest_token_revoked_at is not None
        return IngestTokenRevoked(source_id=source_id, revoked_at=ts(src.ingest_token_revoked_at))
