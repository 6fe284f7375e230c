"""Hosted uploads as Prefect tasks: thin adapters over `splendor_flows.engine.uploads`.

Each task gives an engine function a client, the run logger, a checkpoint store in Prefect's result
storage (so every worker that shares that storage resumes the same parts), retries and a cached result.
The upload logic itself, and its resume rules, live in the engine.
"""

import hashlib
import uuid
from datetime import timedelta
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.results import get_result_store
from prefect.types import DateTime
from prefect.types._datetime import now as prefect_now
from pydantic import BaseModel, ValidationError

from splendor_flows.engine import uploads as engine
from splendor_flows.engine.errors import SpecError
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.report import Event
from splendor_flows.engine.uploads import (
    HandOff,
    LocalFile,
    UploadedFile,
    UploadInputError,
    UploadReady,
    inspect_files,
)
from splendor_flows.orchestration.checkpoint import CACHE_VERSION, CHECKPOINT_TTL, STEP_OPTIONS
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.runtime import current_runtime
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.specs.source import safe_slug

# Callers (the CLI) check files with these before they start a flow.
__all__ = [
    "HandOff",
    "LocalFile",
    "UploadInputError",
    "UploadReady",
    "UploadedFile",
    "emit_upload_completed",
    "hand_off_latest",
    "inspect_files",
    "upload_event_id",
    "upload_file",
    "validate_upload_session_id",
    "wait_upload_ready",
]

# --- parameter checks (before any call) -------------------------------------------------------------------


def validate_upload_session_id(value: str, *, source_key: str) -> str:
    """The API's rule (1-64 characters), plus no bare dot segment: the id is a URL path segment too."""
    if not 1 <= len(value) <= 64 or value in (".", ".."):
        raise SpecError(
            source_key,
            f"upload_session_id {value[:80]!a} is not allowed (1-64 characters, not '.' or '..')",
        )
    return value


# --- checkpoints ------------------------------------------------------------------------------------------


def _namespace(scope: Scope) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{scope.tenant}|{scope.source_key}|{scope.sync_id}".encode())
    return (
        f"splendor-{CACHE_VERSION}/uploads/{safe_slug(scope.tenant)}/{safe_slug(scope.source_key)}/"
        f"{safe_slug(scope.sync_id)}-{digest.hexdigest()[:16]}"
    )


def upload_checkpoint_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
    scope: Scope = inputs["scope"]
    parts = [ctx.task.name]
    file: LocalFile | None = inputs.get("file")
    if file is not None:
        parts += [file.filename, str(file.size), file.sha256]
    if "upload_session_id" in inputs:
        parts.append(str(inputs["upload_session_id"]))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return f"{_namespace(scope)}/{ctx.task.name}-{digest}"


UPLOAD_OPTIONS: dict[str, Any] = {
    **STEP_OPTIONS,
    "cache_policy": CachePolicy.from_cache_key_fn(upload_checkpoint_key),
}


class ResultStoreCheckpoints:
    """The engine's checkpoint store in Prefect's result storage, scoped to one upload (tenant, source,
    upload id). Whatever storage the task results use (a shared bucket in production), these use too."""

    def __init__(self, scope: Scope, ttl: timedelta = CHECKPOINT_TTL) -> None:
        self._prefix = _namespace(scope)
        self._ttl = ttl

    async def get(self, key: str, model: type[engine.M]) -> engine.M | None:
        store = get_result_store()
        path = f"{self._prefix}/{key}"
        if not await store.aexists(path):  # also False once the record has expired
            return None
        try:
            return model.model_validate((await store.aread(path)).result)
        except ValidationError:
            return None  # written by an older layout: act as if the step had not run

    async def put(self, key: str, value: BaseModel) -> None:
        # Computed as Prefect computes its own cache expirations; its annotation is narrower than the
        # datetimes its metadata model accepts.
        expiration = cast(DateTime, prefect_now("UTC") + self._ttl)
        await get_result_store().awrite(
            value.model_dump(mode="json"), key=f"{self._prefix}/{key}", expiration=expiration
        )


# --- steps ------------------------------------------------------------------------------------------------


@task(name="upload-file", task_run_name="upload-{file.filename}", **UPLOAD_OPTIONS)
async def upload_file(
    scope: Scope, file: LocalFile, part_size: int, max_parallel_parts: int, force: bool = False
) -> UploadedFile:
    """Initiate, send (resuming finished parts) and complete one file."""
    async with open_client(scope.credentials_block) as client:
        return await engine.send_file(
            client,
            engine.SystemClock(),
            ResultStoreCheckpoints(scope),
            file,
            source_key=scope.source_key,
            part_size=part_size,
            max_parallel_parts=max_parallel_parts,
            # The CLI's progress bars: set by the caller in the runtime context, reported by the engine.
            progress=current_runtime().upload_progress,
            log=get_run_logger(),
            force=force,
        )


@task(name="upload-ready", **UPLOAD_OPTIONS)
async def wait_upload_ready(scope: Scope, upload_session_id: str, poll: PollOptions) -> UploadReady:
    """Follow a hosted upload's ingest run to `ready`."""
    async with open_client(scope.credentials_block) as client:
        return await engine.poll_upload_ready(
            client,
            engine.SystemClock(),
            upload_session_id,
            poll,
            source_key=scope.source_key,
            log=get_run_logger(),
        )


@task(name="hand-off-latest", **UPLOAD_OPTIONS)
async def hand_off_latest(scope: Scope, source_id: int) -> HandOff:
    """Hand the source's latest succeeded sync run to ingestion; the checkpoint makes a duplicate event
    skip even the (idempotent) enqueue call."""
    async with open_client(scope.credentials_block) as client:
        return await engine.hand_off_latest_run(
            client, source_id, source_key=scope.source_key, log=get_run_logger()
        )


# --- events -----------------------------------------------------------------------------------------------


def upload_event_id(scope: Scope, upload_session_id: str) -> uuid.UUID:
    """Same upload → same event id, so a re-emitted event after a resume is recognised as a duplicate."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"splendor:{scope.tenant}:{scope.source_key}:{upload_session_id}")


def emit_upload_completed(scope: Scope, uploaded: UploadedFile) -> str:
    event_id = upload_event_id(scope, uploaded.upload_session_id)
    emit(
        Event.UPLOAD_COMPLETED,
        scope,
        {
            "upload_id": scope.sync_id,
            "upload_session_id": uploaded.upload_session_id,
            "key": uploaded.key,
            "bucket": uploaded.bucket,
            "bytes": uploaded.bytes,
            "filename": uploaded.filename,
            "ingest_run_id": uploaded.ingest_run_id,
        },
        event_id=event_id,
    )
    return str(event_id)
