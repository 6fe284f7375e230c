"""Hosted uploads as checkpointed steps: initiate → (single PUT | signed parts PUT in parallel) → complete.

Resume rules:
- The initiate step is keyed on (upload id, file name, size, sha256), so a re-run with the same
  upload id finds the same upload session instead of opening a new one.
- Each multipart part is its own task keyed on (upload session, part number, file sha256): a run that
  failed at part 7 of 10 re-sends parts 7-10 only.
- Presigned URLs carry a signature (a credential). They are never logged, never part of a checkpoint
  and never an event payload; parts are signed again by the run that needs them.
"""

import asyncio
import hashlib
import mimetypes
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.events import emit_event
from pydantic import BaseModel

from splendor_api import Conflict, NotFound, OutcomeUnknown, SplendorClient, SplendorError, models
from splendor_api.models import INGEST_ACTIVE, INGEST_TERMINAL_BAD, INGEST_TERMINAL_OK
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.polling import PollOptions, next_delay
from splendor_flows.orchestration.api import open_client
from splendor_flows.orchestration.checkpoint import CACHE_VERSION, STEP_OPTIONS, Scope
from splendor_flows.orchestration.runtime import current_runtime
from splendor_flows.specs.source import safe_slug

# S3's limits, which the hosted upload API mirrors: at most 10,000 parts, objects up to 5 TiB.
MAX_PARTS = 10_000
MAX_OBJECT_BYTES = 5 * 1024**4
MAX_FILENAME_CHARS = 1024
# Parts signed per `sign_parts` call; the API accepts up to 1,000.
SIGN_BATCH = 100
# A session this close to expiry is not resumed: its part URLs would die mid-upload.
EXPIRY_MARGIN = timedelta(minutes=5)

# Splendor routes each object by its type; these are the types it turns into records or images.
CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".json": "application/json",
    ".csv": "text/csv",
    ".gz": "application/gzip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

# In-process progress hook (the CLI's progress bar): called with (filename, bytes just sent).


class UploadInputError(ValueError):
    """A file given to an upload is unusable; raised before any remote call."""


class LocalFile(BaseModel):
    path: str
    filename: str
    size: int
    sha256: str
    content_type: str


class SessionRef(BaseModel):
    """Checkpoint of the initiate step. No presigned URL in here (see module docstring)."""

    upload_session_id: str
    mode: str
    bucket: str
    key: str
    expires_at: datetime
    upload_id: str | None
    part_size_bytes: int | None
    required_headers: dict[str, str]
    # Single mode sends the bytes inside the initiate step (its URL is only known there).
    single_etag: str | None = None


class PartDone(BaseModel):
    part_number: int
    etag: str
    size: int


class UploadedFile(BaseModel):
    filename: str
    upload_session_id: str
    mode: str
    bucket: str
    key: str
    bytes: int
    parts: int
    etag: str | None
    dataset_id: str | None = None
    source_id: int | None = None
    ingest_run_id: str | None = None


# --- validation (no remote call) -----------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_type_for(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


def inspect_files(
    paths: list[str], *, allow_empty: bool = False, max_bytes: int = MAX_OBJECT_BYTES
) -> list[LocalFile]:
    """Check every file before anything is sent, so a bad file in a batch fails the batch up front."""
    if not paths:
        raise UploadInputError("no files given")
    problems: list[str] = []
    files: list[LocalFile] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            problems.append(f"{raw}: no such file")
            continue
        if not path.is_file():
            problems.append(f"{raw}: not a regular file")
            continue
        resolved = path.resolve()
        if resolved in seen:
            problems.append(f"{raw}: given more than once")
            continue
        seen.add(resolved)
        name = path.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            # A name that is not valid UTF-8 arrives as surrogate escapes: the API could not store it.
            problems.append(f"{os.fsencode(raw)!r}: the file name is not valid UTF-8; rename the file")
            continue
        if len(name) > MAX_FILENAME_CHARS:
            problems.append(f"{raw}: the file name is longer than {MAX_FILENAME_CHARS} characters")
            continue
        size = path.stat().st_size
        if size == 0 and not allow_empty:
            problems.append(f"{raw}: the file is empty (pass allow_empty to upload it anyway)")
            continue
        if size > max_bytes:
            problems.append(f"{raw}: {size} bytes is over the {max_bytes}-byte limit of one object")
            continue
        files.append(
            LocalFile(
                path=str(resolved),
                filename=name,
                size=size,
                sha256=_sha256(path),
                content_type=content_type_for(name),
            )
        )
    if problems:
        raise UploadInputError("cannot upload: " + "; ".join(problems))
    return files


def plan_parts(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part_number, offset, length) for a multipart upload; an empty object still has one part."""
    if part_size <= 0:
        raise UploadInputError(f"part size must be positive, got {part_size}")
    count = max(1, -(-size // part_size))
    if count > MAX_PARTS:
        raise UploadInputError(
            f"{size} bytes in {part_size}-byte parts needs {count} parts; the limit is {MAX_PARTS}"
        )
    return [(n + 1, n * part_size, min(part_size, size - n * part_size)) for n in range(count)]


# --- checkpoint keys ------------------------------------------------------------------------------------


def upload_checkpoint_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
    scope: Scope = inputs["scope"]
    parts = [CACHE_VERSION, ctx.task.name, scope.tenant, scope.source_key, scope.sync_id]
    file: LocalFile | None = inputs.get("file")
    if file is not None:
        parts += [file.filename, str(file.size), file.sha256]
    for name in ("upload_session_id", "part_number"):
        if name in inputs:
            parts.append(str(inputs[name]))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
    return (
        f"splendor-{CACHE_VERSION}/uploads/{safe_slug(scope.tenant)}/{safe_slug(scope.source_key)}/{digest}"
    )


UPLOAD_OPTIONS: dict[str, Any] = {
    **STEP_OPTIONS,
    "cache_policy": CachePolicy.from_cache_key_fn(upload_checkpoint_key),
}


def _read(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise PermanentStepError("upload", "-", f"{path} changed while uploading (short read)")
    return data


def _report(filename: str, sent: int) -> None:
    progress = current_runtime().upload_progress
    if progress is not None:
        progress(filename, sent)


# --- steps ----------------------------------------------------------------------------------------------


@task(name="upload-initiate", **UPLOAD_OPTIONS)
async def start_upload(scope: Scope, file: LocalFile) -> SessionRef:
    """Open the upload session; in single mode also send the bytes (the URL exists only here)."""
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        session = await client.initiate_upload(
            scope.source_key,
            content_type=file.content_type,
            object_size_bytes=file.size,
            filename=file.filename,
        )
        ref = SessionRef(
            upload_session_id=session.upload_session_id,
            mode=session.upload_mode,
            bucket=session.bucket,
            key=session.key,
            expires_at=session.expires_at,
            upload_id=session.upload_id,
            part_size_bytes=session.part_size_bytes,
            required_headers=session.required_headers,
        )
        logger.info(
            "Upload session %s (%s) for %s, %s bytes",
            ref.upload_session_id,
            ref.mode,
            file.filename,
            file.size,
        )
        if session.upload_mode == "single":
            if not session.upload_url:
                raise PermanentStepError(
                    "upload", scope.source_key, "single-mode session came without an upload URL"
                )
            data = _read(file.path, 0, file.size)
            ref.single_etag = await client.put_object(session.upload_url, data, session.required_headers)
            _report(file.filename, file.size)
    return ref


class PartSigner:
    """Signs part URLs in batches, only when a part that still has to be sent asks for one."""

    def __init__(
        self, client: SplendorClient, source_key: str, upload_session_id: str, part_numbers: list[int]
    ):
        self._client = client
        self._source_key = source_key
        self._session = upload_session_id
        self._order = part_numbers
        self._urls: dict[int, models.SignedPart] = {}
        self._lock = asyncio.Lock()

    async def url(self, part_number: int, *, fresh: bool = False) -> models.SignedPart:
        async with self._lock:
            if fresh:
                self._urls.pop(part_number, None)
            if part_number not in self._urls:
                start = self._order.index(part_number)
                batch = [
                    n
                    for n in self._order[start : start + SIGN_BATCH]
                    if n not in self._urls or n == part_number
                ]
                for signed in await self._client.sign_parts(self._source_key, self._session, batch):
                    self._urls[signed.part_number] = signed
            if part_number not in self._urls:
                raise PermanentStepError(
                    "upload", self._source_key, f"the API did not sign part {part_number}"
                )
            return self._urls[part_number]

    def __repr__(self) -> str:  # never show the signed URLs
        return f"PartSigner(session={self._session!r}, signed={len(self._urls)})"


@task(name="upload-part", task_run_name="upload-part-{part_number}", **UPLOAD_OPTIONS)
async def upload_part(
    scope: Scope,
    upload_session_id: str,
    part_number: int,
    file: LocalFile,
    offset: int,
    length: int,
    required_headers: dict[str, str],
    signer: PartSigner,
) -> PartDone:
    data = _read(file.path, offset, length)
    signed = await signer.url(part_number)
    headers = {**required_headers, **signed.required_headers}
    async with open_client(scope.credentials_block) as client:
        try:
            etag = await client.put_object(signed.upload_url, data, headers)
        except SplendorError as exc:
            if getattr(exc, "status", None) != 403:
                raise
            # An expired or rejected signature: sign this part again once, then give up.
            signed = await signer.url(part_number, fresh=True)
            etag = await client.put_object(
                signed.upload_url, data, {**required_headers, **signed.required_headers}
            )
    _report(file.filename, length)
    return PartDone(part_number=part_number, etag=etag, size=length)


@task(name="upload-complete", **UPLOAD_OPTIONS)
async def complete_upload(
    scope: Scope, file: LocalFile, upload_session_id: str, parts: list[PartDone], ref: SessionRef
) -> UploadedFile:
    logger = get_run_logger()
    completed_parts = [models.CompletedPart(etag=p.etag, part_number=p.part_number) for p in parts] or None
    async with open_client(scope.credentials_block) as client:
        try:
            done = await client.complete_upload(scope.source_key, upload_session_id, completed_parts)
            etag, dataset_id, source_id = done.etag, done.dataset_id, done.source_id
        except (OutcomeUnknown, Conflict) as exc:
            # The first complete may have landed before the connection dropped: read instead of resending.
            readiness = await client.upload_readiness(upload_session_id)
            if readiness.upload_status not in ("completed", "complete"):
                raise
            logger.info("Upload %s was already completed (%s)", upload_session_id, type(exc).__name__)
            etag, dataset_id, source_id = ref.single_etag, readiness.dataset_id, readiness.source_id
        ingest_run_id = None
        try:
            ingest_run_id = (await client.upload_readiness(upload_session_id)).ingest_run_id
        except SplendorError as exc:  # readiness is a nicety here; after-upload follows it properly
            logger.warning("Could not read readiness of %s yet: %s", upload_session_id, exc)
    return UploadedFile(
        filename=file.filename,
        upload_session_id=upload_session_id,
        mode=ref.mode,
        bucket=ref.bucket,
        key=ref.key,
        bytes=file.size,
        parts=max(1, len(parts)),
        etag=etag,
        dataset_id=dataset_id,
        source_id=source_id,
        ingest_run_id=ingest_run_id,
    )


def session_expired(ref: SessionRef) -> bool:
    expires = ref.expires_at if ref.expires_at.tzinfo else ref.expires_at.replace(tzinfo=UTC)
    return expires - EXPIRY_MARGIN <= datetime.now(UTC)


def upload_event_id(scope: Scope, upload_session_id: str) -> uuid.UUID:
    """Same upload → same event id, so a re-emitted event after a resume is recognised as a duplicate."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"splendor:{scope.tenant}:{scope.source_key}:{upload_session_id}")


def emit_upload_completed(scope: Scope, uploaded: UploadedFile) -> str:
    event_id = upload_event_id(scope, uploaded.upload_session_id)
    emit_event(
        event="splendor.upload.completed",
        resource={
            "prefect.resource.id": scope.resource_id,
            "splendor.tenant": scope.tenant,
            "splendor.source_key": scope.source_key,
        },
        payload={
            "upload_id": scope.sync_id,
            "upload_session_id": uploaded.upload_session_id,
            "key": uploaded.key,
            "bucket": uploaded.bucket,
            "bytes": uploaded.bytes,
            "filename": uploaded.filename,
            "ingest_run_id": uploaded.ingest_run_id,
        },
        id=event_id,
    )
    return str(event_id)


# --- after the upload -----------------------------------------------------------------------------------


class UploadReady(BaseModel):
    upload_session_id: str
    upload_status: str
    ingest_status: str | None
    ingest_run_id: str | None
    documents: int
    polls: int


@task(name="upload-ready", **UPLOAD_OPTIONS)
async def wait_upload_ready(scope: Scope, upload_session_id: str, poll: PollOptions) -> UploadReady:
    """Follow a hosted upload's ingest run to `ready`; failed or aborted ingestion fails the step."""
    logger = get_run_logger()
    began = time.monotonic()
    polls = 0
    async with open_client(scope.credentials_block) as client:
        while True:
            try:
                state = await client.upload_readiness(upload_session_id)
            except NotFound:
                raise PermanentStepError(
                    "upload-ready",
                    scope.source_key,
                    f"upload session {upload_session_id} does not exist",
                    "check the event's upload_session_id and tenant",
                ) from None
            except SplendorError as exc:
                if exc.permanent:
                    raise
                logger.warning("Reading readiness of %s failed (%s); will try again", upload_session_id, exc)
                state = None
            polls += 1
            if state is not None:
                status = state.ingest_status
                if status in INGEST_TERMINAL_OK:
                    counts = state.documents
                    docs = (counts.index_committed or counts.parsed or 0) if counts else 0
                    logger.info("Upload %s is ready (%s documents)", upload_session_id, docs)
                    return UploadReady(
                        upload_session_id=upload_session_id,
                        upload_status=state.upload_status,
                        ingest_status=status,
                        ingest_run_id=state.ingest_run_id,
                        documents=int(docs),
                        polls=polls,
                    )
                if status in INGEST_TERMINAL_BAD:
                    detail = state.error_message or state.error_code or "no error message"
                    raise PermanentStepError(
                        "upload-ready",
                        scope.source_key,
                        f"ingestion of upload {upload_session_id} (run {state.ingest_run_id}) "
                        f"ended {status}: {detail}",
                        "fix the file and upload it again",
                    )
                if status is not None and status not in INGEST_ACTIVE:
                    raise PermanentStepError(
                        "upload-ready",
                        scope.source_key,
                        f"upload {upload_session_id} has an unknown status {status!r}",
                    )
            if time.monotonic() - began > poll.deadline_seconds:
                raise DeadlineExceeded(
                    "upload-ready",
                    scope.source_key,
                    f"upload {upload_session_id} not ready after {poll.deadline_seconds:.0f} s",
                    "run after-upload again with the same event_id to keep waiting",
                )
            await asyncio.sleep(next_delay(poll, polls, time.monotonic() - began))


class HandOff(BaseModel):
    run_id: int | None
    ingest_run_ids: list[str]
    skipped_reason: str | None = None


@task(name="hand-off-latest", **UPLOAD_OPTIONS)
async def hand_off_latest(scope: Scope, source_id: int) -> HandOff:
    """Enqueue ingestion of the source's latest succeeded sync run (the API picks it).

    Enqueuing the same run twice returns the same ingest runs, so a resend after an unknown outcome
    is safe; the checkpoint makes a duplicate event skip even that call.
    """
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        try:
            try:
                runs = await client.enqueue_ingest(source_id)
            except OutcomeUnknown:
                runs = await client.enqueue_ingest(source_id)
        except Conflict as exc:
            if exc.code == "no_landed_data":
                logger.warning(
                    "Source %s has no succeeded run with landed data: nothing to hand off", scope.source_key
                )
                return HandOff(run_id=None, ingest_run_ids=[], skipped_reason="no landed data")
            raise
    run_ids = {r.connector_run_id for r in runs if r.connector_run_id is not None}
    run_id = run_ids.pop() if len(run_ids) == 1 else None
    logger.info(
        "Handed run %s of %s to ingestion: %s", run_id, scope.source_key, [r.ingest_run_id for r in runs]
    )
    return HandOff(run_id=run_id, ingest_run_ids=[r.ingest_run_id for r in runs])
