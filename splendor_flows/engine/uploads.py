"""Hosted uploads, once: initiate → (single PUT | signed parts PUT in parallel) → complete → readiness.

Plain async functions over a client, a clock, a checkpoint store and a progress callback. Nothing here
knows about Prefect: the task adapters in `tasks/uploads.py` give these functions a Prefect-backed store,
the run logger, retries and events.

Resume rules (the store is what makes them hold across retries, runs and workers):
- A file's upload session is checkpointed under the file's identity (name, size, sha256). A resumed upload
  reuses it unless it is about to expire; then it opens a new one.
- Every finished part is checkpointed under (session, part number) and never sent again for that session.
- Single mode: the upload URL exists only in the initiate answer, so its session is checkpointed only once
  the bytes are sent; a failed single PUT opens a new session next time.
- A completed file is checkpointed as well: asking again returns it without any call.
- Presigned URLs carry a signature (a credential). They are never logged, never checkpointed and never
  part of an error; parts are signed when about to be sent, and signed again when their URL is about to
  expire or the object store refuses it (403).
"""

import asyncio
import hashlib
import logging
import mimetypes
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from splendor_api import ApiError, Conflict, NotFound, OutcomeUnknown, SplendorError, models
from splendor_api.models import INGEST_ACTIVE, INGEST_TERMINAL_BAD, INGEST_TERMINAL_OK
from splendor_flows.engine.clock import Clock
from splendor_flows.engine.clock import SystemClock as SystemClock  # the upload tasks build theirs from here
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.polling import PollOptions, next_delay
from splendor_flows.engine.store import CheckpointStore

# S3's limits, which the hosted upload API mirrors: at most 10,000 parts, objects up to 5 TiB.
MAX_PARTS = 10_000
MAX_OBJECT_BYTES = 5 * 1024**4
MAX_FILENAME_CHARS = 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# Parts signed per `sign_parts` call; the API accepts up to 1,000.
SIGN_BATCH = 100
# A multipart session this close to expiry is not resumed: its part URLs would die mid-upload.
EXPIRY_MARGIN = timedelta(minutes=5)
# A signed part URL this close to expiry is signed again before its PUT starts.
URL_MARGIN = timedelta(minutes=1)
# Part checkpoints read at once when resuming: a shared store (a bucket) answers each in tens of ms,
# so 10,000 parts read one by one would take minutes.
STORE_READS = 16

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

STEP = "upload"
READY_STEP = "upload-ready"

_log = logging.getLogger(__name__)

# (file name, bytes just sent): lets a terminal draw progress bars.
Progress = Callable[[str, int], None]
Log = logging.Logger | logging.LoggerAdapter[Any]
M = TypeVar("M", bound=BaseModel)


# --- what the engine runs over ----------------------------------------------------------------------------


class UploadApi(Protocol):
    """The calls of `SplendorClient` this module makes (tests pass an in-memory fake)."""

    async def initiate_upload(
        self, source_key: str, *, content_type: str, object_size_bytes: int, filename: str | None = None
    ) -> models.UploadSession: ...

    async def sign_parts(
        self, source_key: str, upload_session_id: str, part_numbers: list[int]
    ) -> list[models.SignedPart]: ...

    async def put_object(self, url: str, data: bytes, headers: Mapping[str, str]) -> str: ...

    async def complete_upload(
        self, source_key: str, upload_session_id: str, parts: list[models.CompletedPart] | None = None
    ) -> models.CompletedUpload: ...

    async def upload_readiness(self, upload_session_id: str) -> models.UploadReadiness: ...

    async def enqueue_ingest(self, source_id: int, run_id: int | None = None) -> list[models.IngestRun]: ...


# --- checkpoint payloads (ids, sizes and ETags; never a URL) -----------------------------------------------


class UploadInputError(ValueError):
    """A file given to an upload is unusable; raised before any remote call."""


class LocalFile(BaseModel):
    path: str
    filename: str
    size: int
    sha256: str
    content_type: str
    # Seen when the file was inspected: a part read that sees another one knows the file changed.
    mtime_ns: int = 0


class SessionRef(BaseModel):
    upload_session_id: str
    mode: str
    bucket: str
    key: str
    expires_at: datetime
    upload_id: str | None
    # The part size the parts were cut with (the API's, or ours when it named none): a resume must cut
    # the file the same way or its part checkpoints would describe other bytes.
    part_size_bytes: int | None
    required_headers: dict[str, str]
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


class UploadReady(BaseModel):
    upload_session_id: str
    upload_status: str
    ingest_status: str | None
    ingest_run_id: str | None
    documents: int
    polls: int


class HandOff(BaseModel):
    run_id: int | None
    ingest_run_ids: list[str]
    skipped_reason: str | None = None


# --- local checks (no remote call) -------------------------------------------------------------------------


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
    paths: Sequence[str], *, allow_empty: bool = False, max_bytes: int = MAX_OBJECT_BYTES
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
        stat = path.stat()
        if stat.st_size == 0 and not allow_empty:
            problems.append(f"{raw}: the file is empty (pass allow_empty to upload it anyway)")
            continue
        if stat.st_size > max_bytes:
            problems.append(f"{raw}: {stat.st_size} bytes is over the {max_bytes}-byte limit of one object")
            continue
        files.append(
            LocalFile(
                path=str(resolved),
                filename=name,
                size=stat.st_size,
                sha256=_sha256(path),
                content_type=content_type_for(name),
                mtime_ns=stat.st_mtime_ns,
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


def read_part(file: LocalFile, offset: int, length: int, source_key: str) -> bytes:
    """The bytes of one part, refused when the file is no longer the one that was inspected.

    Parts go out in parallel and across runs, so a file rewritten mid-upload would otherwise land as a
    mix of old and new bytes under the old checksum.
    """
    with open(file.path, "rb") as handle:
        before = os.fstat(handle.fileno())
        handle.seek(offset)
        data = handle.read(length)
        after = os.fstat(handle.fileno())
    problem = None
    if len(data) != length:
        problem = f"read {len(data)} of {length} bytes at offset {offset} (short read)"
    elif {before.st_size, after.st_size} != {file.size}:
        problem = f"its size went from {file.size} to {after.st_size} bytes"
    elif file.mtime_ns and {before.st_mtime_ns, after.st_mtime_ns} != {file.mtime_ns}:
        problem = "it was modified"
    if problem is not None:
        raise PermanentStepError(
            STEP,
            source_key,
            f"{file.filename} ({file.path}) changed while uploading: {problem}",
            "upload it again once nothing writes to it",
        )
    return data


def _expired(expires_at: datetime, now: datetime, margin: timedelta) -> bool:
    expires = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    return expires - margin <= now


def session_expired(ref: SessionRef, now: datetime) -> bool:
    # A single-mode session only needs its complete call, so it is good until its last second; a
    # multipart one still has parts to send and gets a margin.
    return _expired(ref.expires_at, now, timedelta(0) if ref.mode == "single" else EXPIRY_MARGIN)


def _digest(*fields: object) -> str:
    return hashlib.sha256("|".join(str(f) for f in fields).encode()).hexdigest()[:24]


class _Keys:
    """Checkpoint keys of one file, relative to the store (which scopes them to tenant, source, upload)."""

    def __init__(self, file: LocalFile) -> None:
        self.file = f"file-{_digest(file.filename, file.size, file.sha256)}"

    @property
    def session(self) -> str:
        return f"{self.file}/session"

    @property
    def done(self) -> str:
        return f"{self.file}/done"

    def part(self, upload_session_id: str, part_number: int) -> str:
        # Bound to the session: a part of another session is other bytes at another object key.
        return f"{self.file}/parts-{_digest(upload_session_id)}/{part_number}"


def _report(progress: Progress | None, filename: str, sent: int) -> None:
    if progress is not None:
        progress(filename, sent)


# --- the upload -----------------------------------------------------------------------------------------


async def send_file(
    client: UploadApi,
    clock: Clock,
    store: CheckpointStore,
    file: LocalFile,
    *,
    source_key: str,
    part_size: int = DEFAULT_PART_SIZE,
    max_parallel_parts: int = 4,
    progress: Progress | None = None,
    log: Log = _log,
    force: bool = False,
) -> UploadedFile:
    """Upload one file and complete it, resuming whatever the store says is already done.

    `force` ignores the store and opens a new session (what it writes replaces the old checkpoints).
    """
    keys = _Keys(file)
    if not force:
        done = await store.get(keys.done, UploadedFile)
        if done is not None:
            log.info("%s was already uploaded (session %s)", file.filename, done.upload_session_id)
            _report(progress, file.filename, file.size)
            return done
    ref = None if force else await store.get(keys.session, SessionRef)
    if ref is not None and session_expired(ref, clock.now()):
        log.warning("Upload session %s has expired; opening a new one", ref.upload_session_id)
        ref = None
    resumed = ref is not None
    if ref is None:
        ref = await _open_session(client, file, source_key, part_size, progress, log)
        await store.put(keys.session, ref)
    else:
        log.info("Resuming upload session %s (%s) of %s", ref.upload_session_id, ref.mode, file.filename)
    parts: list[PartDone] = []
    if ref.mode == "multipart":
        parts = await _send_parts(
            client, clock, store, keys, file, ref, resumed, source_key, max_parallel_parts, progress, log
        )
    uploaded = await _complete(client, file, ref, parts, source_key, log)
    await store.put(keys.done, uploaded)
    return uploaded


async def _open_session(
    client: UploadApi, file: LocalFile, source_key: str, part_size: int, progress: Progress | None, log: Log
) -> SessionRef:
    session = await client.initiate_upload(
        source_key, content_type=file.content_type, object_size_bytes=file.size, filename=file.filename
    )
    if session.upload_mode not in ("single", "multipart"):
        raise PermanentStepError(
            STEP, source_key, f"the API chose an unknown upload mode {session.upload_mode!r}"
        )
    ref = SessionRef(
        upload_session_id=session.upload_session_id,
        mode=session.upload_mode,
        bucket=session.bucket,
        key=session.key,
        expires_at=session.expires_at,
        upload_id=session.upload_id,
        part_size_bytes=(session.part_size_bytes or part_size)
        if session.upload_mode == "multipart"
        else None,
        required_headers=session.required_headers,
    )
    log.info(
        "Upload session %s (%s) for %s, %s bytes", ref.upload_session_id, ref.mode, file.filename, file.size
    )
    if ref.mode == "single":
        if not session.upload_url:
            raise PermanentStepError(STEP, source_key, "a single-mode session came without an upload URL")
        data = read_part(file, 0, file.size, source_key)
        ref.single_etag = await client.put_object(session.upload_url, data, session.required_headers)
        _report(progress, file.filename, file.size)
    return ref


class PartSigner:
    """Signs part URLs in batches, only for parts still to be sent, and again when one is about to expire."""

    def __init__(
        self,
        client: UploadApi,
        clock: Clock,
        source_key: str,
        upload_session_id: str,
        part_numbers: list[int],
    ) -> None:
        self._client = client
        self._clock = clock
        self._source_key = source_key
        self._session = upload_session_id
        self._order = part_numbers
        self._position = {n: i for i, n in enumerate(part_numbers)}
        self._urls: dict[int, models.SignedPart] = {}
        self._lock = asyncio.Lock()

    def _usable(self, part_number: int) -> bool:
        signed = self._urls.get(part_number)
        if signed is None:
            return False
        return signed.expires_at is None or not _expired(signed.expires_at, self._clock.now(), URL_MARGIN)

    async def url(self, part_number: int, *, fresh: bool = False) -> models.SignedPart:
        async with self._lock:
            if fresh:
                self._urls.pop(part_number, None)
            if not self._usable(part_number):
                start = self._position[part_number]
                batch = [
                    n
                    for n in self._order[start : start + SIGN_BATCH]
                    if n == part_number or not self._usable(n)
                ]
                for signed in await self._client.sign_parts(self._source_key, self._session, batch):
                    if signed.part_number in batch:
                        self._urls[signed.part_number] = signed
            if part_number not in self._urls:
                raise PermanentStepError(STEP, self._source_key, f"the API did not sign part {part_number}")
            return self._urls[part_number]

    def __repr__(self) -> str:  # never show the signed URLs
        return f"PartSigner(session={self._session!r}, signed={len(self._urls)})"


async def _put_part(
    client: UploadApi, signer: PartSigner, part_number: int, data: bytes, headers: dict[str, str], log: Log
) -> str:
    signed = await signer.url(part_number)
    try:
        return await client.put_object(signed.upload_url, data, {**headers, **signed.required_headers})
    except ApiError as exc:
        if exc.status != 403:
            raise
    # An expired or rejected signature: sign this part again once, then let a second refusal stand.
    log.info("Part %s was refused by the object store (HTTP 403); signing it again", part_number)
    signed = await signer.url(part_number, fresh=True)
    return await client.put_object(signed.upload_url, data, {**headers, **signed.required_headers})


async def _finished_parts(
    store: CheckpointStore, keys: _Keys, ref: SessionRef, plan: list[tuple[int, int, int]]
) -> list[PartDone]:
    """The parts of a resumed session that its checkpoints say were sent."""
    gate = asyncio.Semaphore(STORE_READS)

    async def read(number: int, length: int) -> PartDone | None:
        async with gate:
            done = await store.get(keys.part(ref.upload_session_id, number), PartDone)
        # A record of another size describes other bytes: send that part again.
        return done if done is not None and done.part_number == number and done.size == length else None

    found = await asyncio.gather(*(read(number, length) for number, _, length in plan))
    return [part for part in found if part is not None]


async def _send_parts(
    client: UploadApi,
    clock: Clock,
    store: CheckpointStore,
    keys: _Keys,
    file: LocalFile,
    ref: SessionRef,
    resumed: bool,
    source_key: str,
    max_parallel_parts: int,
    progress: Progress | None,
    log: Log,
) -> list[PartDone]:
    try:
        plan = plan_parts(file.size, ref.part_size_bytes or DEFAULT_PART_SIZE)
    except UploadInputError as exc:
        raise PermanentStepError(STEP, source_key, f"{file.filename}: {exc}") from None
    # A session opened just now has no finished part: no need to look.
    finished = await _finished_parts(store, keys, ref, plan) if resumed else []
    if finished:
        log.info("%s: %s of %s parts were already sent", file.filename, len(finished), len(plan))
        _report(progress, file.filename, sum(p.size for p in finished))
    sent = {p.part_number for p in finished}
    pending = [part for part in plan if part[0] not in sent]
    signer = PartSigner(client, clock, source_key, ref.upload_session_id, [n for n, _, _ in pending])
    gate = asyncio.Semaphore(max_parallel_parts)

    async def one(number: int, offset: int, length: int) -> PartDone:
        async with gate:
            data = read_part(file, offset, length, source_key)
            etag = await _put_part(client, signer, number, data, ref.required_headers, log)
            part = PartDone(part_number=number, etag=etag, size=length)
            await store.put(keys.part(ref.upload_session_id, number), part)
        _report(progress, file.filename, length)
        return part

    # gather, not a TaskGroup: parts that succeed next to a failing one still get their checkpoint, so
    # the next attempt sends only the parts that failed.
    results = await asyncio.gather(*(one(*p) for p in pending), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
    finished += [r for r in results if isinstance(r, PartDone)]
    return sorted(finished, key=lambda p: p.part_number)


async def _complete(
    client: UploadApi, file: LocalFile, ref: SessionRef, parts: list[PartDone], source_key: str, log: Log
) -> UploadedFile:
    completed = [models.CompletedPart(etag=p.etag, part_number=p.part_number) for p in parts] or None
    session_id = ref.upload_session_id
    dataset_id: str | None
    try:
        done = await client.complete_upload(source_key, session_id, completed)
        etag, dataset_id, source_id = done.etag, done.dataset_id, done.source_id
    except (OutcomeUnknown, Conflict) as exc:
        # The first complete may have landed before the connection dropped: read instead of resending.
        readiness = await client.upload_readiness(session_id)
        if readiness.upload_status not in ("completed", "complete"):
            raise
        log.info("Upload %s was already completed (%s)", session_id, type(exc).__name__)
        etag, dataset_id, source_id = ref.single_etag, readiness.dataset_id, readiness.source_id
    ingest_run_id = None
    try:
        ingest_run_id = (await client.upload_readiness(session_id)).ingest_run_id
    except SplendorError as exc:  # readiness is a nicety here; after-upload follows it properly
        log.warning("Could not read readiness of %s yet: %s", session_id, exc)
    return UploadedFile(
        filename=file.filename,
        upload_session_id=session_id,
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


# --- after the upload -----------------------------------------------------------------------------------


async def poll_upload_ready(
    client: UploadApi,
    clock: Clock,
    upload_session_id: str,
    poll: PollOptions,
    *,
    source_key: str,
    log: Log = _log,
) -> UploadReady:
    """Follow a hosted upload's ingest run to `ready`; failed or aborted ingestion fails the step."""
    began = clock.monotonic()
    polls = 0
    while True:
        try:
            state: models.UploadReadiness | None = await client.upload_readiness(upload_session_id)
        except NotFound:
            raise PermanentStepError(
                READY_STEP,
                source_key,
                f"upload session {upload_session_id} does not exist",
                "check the event's upload_session_id and tenant",
            ) from None
        except SplendorError as exc:
            if exc.permanent:
                raise
            log.warning("Reading readiness of %s failed (%s); will try again", upload_session_id, exc)
            state = None
        polls += 1
        if state is not None:
            ready = _readiness_outcome(state, upload_session_id, source_key, polls)
            if ready is not None:
                log.info("Upload %s is ready (%s documents)", upload_session_id, ready.documents)
                return ready
        elapsed = clock.monotonic() - began
        if elapsed > poll.deadline_seconds:
            raise DeadlineExceeded(
                READY_STEP,
                source_key,
                f"upload {upload_session_id} not ready after {poll.deadline_seconds:.0f} s",
                "run after-upload again with the same event_id to keep waiting",
            )
        await clock.sleep(next_delay(poll, polls, elapsed))


def _readiness_outcome(
    state: models.UploadReadiness, upload_session_id: str, source_key: str, polls: int
) -> UploadReady | None:
    """The finished result, None while ingestion is still going, or a permanent error."""
    status = state.ingest_status
    if status in INGEST_TERMINAL_OK:
        counts = state.documents
        docs = (counts.index_committed or counts.parsed or 0) if counts else 0
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
            READY_STEP,
            source_key,
            f"ingestion of upload {upload_session_id} (run {state.ingest_run_id}) ended {status}: {detail}",
            "fix the file and upload it again",
        )
    if status is not None and status not in INGEST_ACTIVE:
        # Fail closed: an unknown status may be a terminal one this client does not know yet.
        raise PermanentStepError(
            READY_STEP, source_key, f"upload {upload_session_id} has an unknown status {status!r}"
        )
    return None


async def hand_off_latest_run(
    client: UploadApi, source_id: int, *, source_key: str, log: Log = _log
) -> HandOff:
    """Enqueue ingestion of the source's latest succeeded sync run (the API picks it).

    Enqueuing the same run twice returns the same ingest runs, so a resend after an unknown outcome
    is safe.
    """
    try:
        try:
            runs = await client.enqueue_ingest(source_id)
        except OutcomeUnknown:
            runs = await client.enqueue_ingest(source_id)
    except Conflict as exc:
        if exc.code == "no_landed_data":
            log.warning("Source %s has no succeeded run with landed data: nothing to hand off", source_key)
            return HandOff(run_id=None, ingest_run_ids=[], skipped_reason="no landed data")
        raise
    run_ids = {r.connector_run_id for r in runs if r.connector_run_id is not None}
    run_id = run_ids.pop() if len(run_ids) == 1 else None
    ingest_run_ids = [r.ingest_run_id for r in runs]
    log.info("Handed run %s of %s to ingestion: %s", run_id, source_key, ingest_run_ids)
    return HandOff(run_id=run_id, ingest_run_ids=ingest_run_ids)
