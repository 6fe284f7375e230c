"""The upload state machine without Prefect: an in-memory object store and API, a fake clock, real files."""

import asyncio
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import BaseModel

from splendor_api import Conflict, Forbidden, NotFound, OutcomeUnknown, Unavailable, models
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.uploads import (
    MAX_PARTS,
    SIGN_BATCH,
    STORE_READS,
    LocalFile,
    UploadInputError,
    hand_off_latest_run,
    inspect_files,
    plan_parts,
    poll_upload_ready,
    send_file,
)
from tests.engine.fakes import FakeClock

SOURCE = "catalog"
PART = 100
M = TypeVar("M", bound=BaseModel)


class JsonStore:
    """Checkpoints as JSON text, the way a shared store would hold them."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    async def get(self, key: str, model: type[M]) -> M | None:
        raw = self.records.get(key)
        return None if raw is None else model.model_validate_json(raw)

    async def put(self, key: str, value: BaseModel) -> None:
        self.records[key] = value.model_dump_json()


@dataclass
class Session:
    id: str
    mode: str
    size: int
    part_size: int | None
    expires_at: datetime
    parts: dict[int, bytes] = field(default_factory=dict)
    completed: bool = False


@dataclass
class Signature:
    session: str
    part: int | None
    expires_at: datetime
    dead: bool = False


class FakeUploadApi:
    """The hosted upload API and its object store in memory. Presigned URLs carry a `sig` that the store
    checks like S3 does: unknown, expired or revoked signatures get a 403."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        single_max: int = PART,
        part_size: int | None = PART,
        session_ttl: timedelta = timedelta(hours=1),
        url_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.clock = clock
        self.single_max = single_max
        self.part_size = part_size
        self.session_ttl = session_ttl
        self.url_ttl = url_ttl
        self.sessions: dict[str, Session] = {}
        self.signatures: dict[str, Signature] = {}
        self.calls: Counter[str] = Counter()
        self.sign_batches: list[list[int]] = []
        self.put_parts: list[int | None] = []
        self.refused = 0
        self.refuse_parts: set[int | None] = set()
        self.kill_first_signature_of: set[int] = set()
        self.seconds_per_put = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.mode_override: str | None = None
        self.unsigned_parts: set[int] = set()
        self.completed_parts: list[list[int]] = []
        self.complete_error: Exception | None = None
        self.readiness_script: list[Any] = []
        self.enqueue_script: list[Any] = []

    def _sign(self, session: Session, part: int | None) -> str:
        sig = f"SECRET{len(self.signatures):05d}"
        dead = part is not None and part in self.kill_first_signature_of
        self.kill_first_signature_of.discard(part or 0)
        self.signatures[sig] = Signature(session.id, part, self.clock.now() + self.url_ttl, dead)
        query = f"sig={sig}" + (f"&part={part}" if part is not None else "")
        return f"https://objects.example/bucket/uploads/{session.id}/data?{query}"

    async def initiate_upload(
        self, source_key: str, *, content_type: str, object_size_bytes: int, filename: str | None = None
    ) -> models.UploadSession:
        self.calls["initiate"] += 1
        mode = self.mode_override or ("single" if object_size_bytes <= self.single_max else "multipart")
        session = Session(
            id=f"ups_{len(self.sessions) + 1}",
            mode=mode,
            size=object_size_bytes,
            part_size=self.part_size if mode == "multipart" else None,
            expires_at=self.clock.now() + self.session_ttl,
        )
        self.sessions[session.id] = session
        return models.UploadSession(
            upload_session_id=session.id,
            upload_mode=mode,
            bucket="bucket",
            key=f"uploads/{session.id}/{filename}",
            expires_at=session.expires_at,
            upload_url=self._sign(session, None) if mode == "single" else None,
            upload_id="mpu_1" if mode == "multipart" else None,
            part_size_bytes=session.part_size,
            required_headers={"content-type": content_type} if mode == "single" else {},
        )

    async def sign_parts(
        self, source_key: str, upload_session_id: str, part_numbers: list[int]
    ) -> list[models.SignedPart]:
        self.calls["sign"] += 1
        self.sign_batches.append(list(part_numbers))
        assert 1 <= len(part_numbers) <= 1000, "the API signs 1-1000 parts per call"
        session = self.sessions[upload_session_id]
        return [
            models.SignedPart(
                part_number=n, upload_url=self._sign(session, n), expires_at=self.clock.now() + self.url_ttl
            )
            for n in part_numbers
            if n not in self.unsigned_parts
        ]

    async def put_object(self, url: str, data: bytes, headers: Mapping[str, str]) -> str:
        self.calls["put"] += 1
        query = parse_qs(urlsplit(url).query)
        signature = self.signatures.get(query["sig"][0])
        part = int(query["part"][0]) if "part" in query else None
        # Checked when the request arrives, as S3 does: a transfer may outlast its URL.
        if (
            signature is None
            or signature.dead
            or signature.part != part
            or self.clock.now() > signature.expires_at
            or part in self.refuse_parts
        ):
            self.refused += 1
            raise Forbidden(status=403, method="PUT", path="objects.example/bucket", detail="AccessDenied")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):  # let other parts in flight run, as a network would
                await asyncio.sleep(0)
            self.clock.t += self.seconds_per_put
        finally:
            self.in_flight -= 1
        session = self.sessions[signature.session]
        session.parts[part or 0] = data
        self.put_parts.append(part)
        return f'"{hashlib.md5(data).hexdigest()}"'

    async def complete_upload(
        self, source_key: str, upload_session_id: str, parts: list[models.CompletedPart] | None = None
    ) -> models.CompletedUpload:
        self.calls["complete"] += 1
        session = self.sessions[upload_session_id]
        numbers = [p.part_number for p in parts or []]
        self.completed_parts.append(numbers)
        if session.mode == "multipart":
            assert numbers == list(range(1, len(session.parts) + 1)), numbers
            for p in parts or []:
                assert p.etag == f'"{hashlib.md5(session.parts[p.part_number]).hexdigest()}"'
        session.completed = True
        if self.complete_error is not None:
            raise self.complete_error
        return models.CompletedUpload(
            bucket="bucket", dataset_id="products", key="k", source=source_key, source_id=7, tenant_id="acme"
        )

    def landed(self, upload_session_id: str) -> bytes:
        session = self.sessions[upload_session_id]
        return b"".join(session.parts[n] for n in sorted(session.parts))

    async def upload_readiness(self, upload_session_id: str) -> models.UploadReadiness:
        self.calls["readiness"] += 1
        session = self.sessions.get(upload_session_id)
        if self.readiness_script:
            step = self.readiness_script.pop(0)
            if isinstance(step, Exception):
                raise step
            status, extra = step
            fields = {"upload_status": "completed", "ingest_run_id": "ing_1", **extra}
            return models.UploadReadiness(upload_session_id=upload_session_id, ingest_status=status, **fields)
        return models.UploadReadiness(
            upload_session_id=upload_session_id,
            upload_status="completed" if session and session.completed else "pending",
            ingest_status="queued",
            ingest_run_id="ing_1",
            dataset_id="products",
            source_id=7,
        )

    async def enqueue_ingest(self, source_id: int, run_id: int | None = None) -> list[models.IngestRun]:
        self.calls["enqueue"] += 1
        step = self.enqueue_script.pop(0)
        if isinstance(step, Exception):
            raise step
        return [
            models.IngestRun(
                ingest_run_id=f"ing_{n}",
                tenant_id="acme",
                dataset_id="d",
                source_id=source_id,
                status="queued",
                connector_run_id=step,
            )
            for n in (1, 2)
        ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(epoch=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def api(clock: FakeClock) -> FakeUploadApi:
    return FakeUploadApi(clock)


@pytest.fixture
def store() -> JsonStore:
    return JsonStore()


def local(tmp_path: Path, size: int, name: str = "data.jsonl") -> LocalFile:
    path = tmp_path / name
    path.write_bytes(bytes((i * 7) % 251 for i in range(size)))
    [file] = inspect_files([str(path)], allow_empty=True)
    return file


class Progress:
    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def __call__(self, filename: str, sent: int) -> None:
        self.sent[filename] += sent


async def upload(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, file: LocalFile, **kwargs: Any
) -> Any:
    return await send_file(api, clock, store, file, source_key=SOURCE, part_size=PART, **kwargs)


# --- single and multipart -----------------------------------------------------------------------------


async def test_small_file_goes_in_one_put(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, 40)
    progress = Progress()
    done = await upload(api, clock, store, file, progress=progress)
    assert (done.mode, done.parts, done.bytes) == ("single", 1, 40)
    assert api.calls == {"initiate": 1, "put": 1, "complete": 1, "readiness": 1}
    assert api.landed(done.upload_session_id) == Path(file.path).read_bytes()
    assert progress.sent == {"data.jsonl": 40}


async def test_large_file_goes_in_parallel_parts_signed_in_batches(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    parts = SIGN_BATCH + 5
    file = local(tmp_path, PART * parts - 30)
    progress = Progress()
    done = await upload(api, clock, store, file, max_parallel_parts=3, progress=progress)
    assert (done.mode, done.parts) == ("multipart", parts)
    assert api.landed(done.upload_session_id) == Path(file.path).read_bytes()
    assert api.max_in_flight == 3
    assert [len(b) for b in api.sign_batches] == [SIGN_BATCH, 5]
    assert api.completed_parts == [list(range(1, parts + 1))]
    assert progress.sent == {"data.jsonl": file.size}


async def test_a_completed_file_is_not_sent_again(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 3)
    first = await upload(api, clock, store, file)
    calls = api.calls.copy()
    assert await upload(api, clock, store, file) == first
    assert api.calls == calls
    forced = await upload(api, clock, store, file, force=True)
    assert forced.upload_session_id != first.upload_session_id
    assert api.calls["initiate"] == 2


# --- resume -------------------------------------------------------------------------------------------


async def test_resume_sends_only_the_parts_that_failed(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 6 - 1)
    api.refuse_parts = {3}
    with pytest.raises(Forbidden):
        await upload(api, clock, store, file, max_parallel_parts=2)
    assert api.refused == 2  # the first PUT and the one after signing part 3 again
    assert sorted(p for p in api.put_parts if p) == [1, 2, 4, 5, 6]
    assert api.calls["complete"] == 0

    api.refuse_parts = set()
    api.put_parts.clear()
    api.sign_batches.clear()
    progress = Progress()
    done = await upload(api, clock, store, file, progress=progress)
    assert api.calls["initiate"] == 1
    assert api.put_parts == [3]
    assert api.sign_batches == [[3]]  # finished parts are not even signed again
    assert api.landed(done.upload_session_id) == Path(file.path).read_bytes()
    # The progress bar starts where the last attempt stopped.
    assert progress.sent == {"data.jsonl": file.size}


class SlowStore(JsonStore):
    """Counts lookups and how many are in flight at once, like a bucket that takes a while to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def get(self, key: str, model: type[M]) -> M | None:
        self.looked_up.append(key)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        return await super().get(key, model)


async def test_part_checkpoints_are_read_only_on_resume_and_in_parallel(
    api: FakeUploadApi, clock: FakeClock, tmp_path: Path
) -> None:
    store = SlowStore()
    file = local(tmp_path, PART * 40)
    api.refuse_parts = {40}
    with pytest.raises(Forbidden):
        await upload(api, clock, store, file)
    assert [k.rsplit("/", 1)[-1] for k in store.looked_up] == ["done", "session"]

    api.refuse_parts = set()
    store.looked_up.clear()
    await upload(api, clock, store, file)
    assert len(store.looked_up) == 2 + 40
    assert store.max_in_flight == STORE_READS


async def test_a_part_checkpoint_of_another_size_is_sent_again(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 2)
    api.refuse_parts = {2}
    with pytest.raises(Forbidden):
        await upload(api, clock, store, file)
    [part_key] = [k for k in store.records if k.endswith("/1")]
    record = json.loads(store.records[part_key])
    store.records[part_key] = json.dumps({**record, "size": PART - 1})
    api.refuse_parts = set()
    api.put_parts.clear()
    await upload(api, clock, store, file)
    assert sorted(p for p in api.put_parts if p) == [1, 2]


async def test_an_expiring_session_is_not_resumed(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 4)
    api.refuse_parts = {4}
    with pytest.raises(Forbidden):
        await upload(api, clock, store, file)
    clock.t += timedelta(minutes=56).total_seconds()  # 4 minutes left: parts could die mid-way
    api.refuse_parts = set()
    api.put_parts.clear()
    done = await upload(api, clock, store, file)
    assert api.calls["initiate"] == 2
    assert done.upload_session_id == "ups_2"
    assert sorted(p for p in api.put_parts if p) == [1, 2, 3, 4]


async def test_a_failed_single_put_opens_a_new_session_next_time(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    # Its URL came only with the initiate answer and is not checkpointed: nothing to resume.
    file = local(tmp_path, 10)
    api.refuse_parts = {None}
    with pytest.raises(Forbidden):
        await upload(api, clock, store, file)
    api.refuse_parts = set()
    done = await upload(api, clock, store, file)
    assert (api.calls["initiate"], api.calls["put"], done.upload_session_id) == (2, 2, "ups_2")


async def test_a_single_upload_whose_complete_failed_only_completes_again(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, 10)
    api.complete_error = Unavailable(status=503, method="POST", path="/complete", detail="busy")
    with pytest.raises(Unavailable):
        await upload(api, clock, store, file)
    api.complete_error = None
    done = await upload(api, clock, store, file)
    # The bytes were sent and the session checkpointed: only complete is repeated.
    assert (api.calls["initiate"], api.calls["put"], api.calls["complete"]) == (1, 1, 2)
    assert done.upload_session_id == "ups_1"


# --- signatures ----------------------------------------------------------------------------------------


async def test_a_refused_part_url_is_signed_again_once(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 3)
    api.kill_first_signature_of = {2}
    done = await upload(api, clock, store, file)
    assert api.refused == 1
    assert api.sign_batches == [[1, 2, 3], [2]]
    assert api.landed(done.upload_session_id) == Path(file.path).read_bytes()


async def test_urls_about_to_expire_are_signed_again_before_the_put(
    clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    api = FakeUploadApi(clock, url_ttl=timedelta(minutes=10))
    api.seconds_per_put = timedelta(minutes=4).total_seconds()
    file = local(tmp_path, PART * 4)
    await upload(api, clock, store, file, max_parallel_parts=1)
    assert api.refused == 0
    # Signed at 0 min for 10; part 4 would start at 12 min: signed again first (part 3 at 8 min is fine).
    assert api.sign_batches == [[1, 2, 3, 4], [4]]


async def test_a_part_the_api_did_not_sign_fails_clearly(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    api.unsigned_parts = {2}
    with pytest.raises(PermanentStepError, match=f"source '{SOURCE}': the API did not sign part 2"):
        await upload(api, clock, store, local(tmp_path, PART * 2))


async def test_no_signature_reaches_checkpoints_logs_or_errors(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    file = local(tmp_path, PART * 3)
    api.refuse_parts = {3}
    with pytest.raises(Forbidden) as caught:
        await upload(api, clock, store, file)
    api.refuse_parts = set()
    await upload(api, clock, store, file)
    assert api.signatures
    seen = " ".join([*store.records.values(), caplog.text, str(caught.value)])
    assert "Resuming upload session" in caplog.text  # the logs were captured
    assert not [sig for sig in api.signatures if sig in seen]
    assert "objects.example/bucket/uploads" not in seen


# --- local files --------------------------------------------------------------------------------------


async def test_a_file_that_shrinks_while_uploading_fails_naming_it(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 3, "shrinks.jsonl")

    def truncate(filename: str, sent: int) -> None:
        os.truncate(file.path, PART + 10)

    with pytest.raises(PermanentStepError) as caught:
        await upload(api, clock, store, file, max_parallel_parts=1, progress=truncate)
    message = str(caught.value)
    assert f"[upload] source '{SOURCE}'" in message
    assert "shrinks.jsonl" in message and "read 10 of 100 bytes at offset 100 (short read)" in message
    assert api.put_parts == [1]


async def test_a_file_rewritten_in_place_while_uploading_fails(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    file = local(tmp_path, PART * 3, "rewritten.jsonl")

    def rewrite(filename: str, sent: int) -> None:
        Path(file.path).write_bytes(b"x" * file.size)  # same size, other bytes
        os.utime(file.path, ns=(file.mtime_ns + 10**9, file.mtime_ns + 10**9))

    with pytest.raises(
        PermanentStepError, match=r"rewritten.jsonl .* changed while uploading: it was modified"
    ):
        await upload(api, clock, store, file, max_parallel_parts=1, progress=rewrite)
    assert api.calls["complete"] == 0


def test_files_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    (tmp_path / "a.jsonl").write_text("{}\n")
    with pytest.raises(UploadInputError) as caught:
        inspect_files(
            [
                str(tmp_path / "missing.jsonl"),
                str(empty),
                str(tmp_path),
                str(tmp_path / "a.jsonl"),
                str(tmp_path / "." / "a.jsonl"),
            ]
        )
    message = str(caught.value)
    for expected in (
        "missing.jsonl: no such file",
        "empty.jsonl: the file is empty (pass allow_empty",
        "not a regular file",
        "given more than once",
    ):
        assert expected in message
    with pytest.raises(UploadInputError, match="no files given"):
        inspect_files([])
    with pytest.raises(UploadInputError, match="over the 1-byte limit"):
        inspect_files([str(tmp_path / "a.jsonl")], max_bytes=1)


def test_a_file_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    # Such a name cannot even travel as a flow parameter (Prefect's API is JSON), so the CLI checks
    # files with inspect_files before it starts the flow.
    bad_name = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jsonl")
    Path(bad_name).write_text('{"a": 1}\n')
    with pytest.raises(UploadInputError, match="not valid UTF-8; rename the file"):
        inspect_files([bad_name])


# --- bounds and empty files ----------------------------------------------------------------------------


def test_part_plan_bounds() -> None:
    assert plan_parts(250, 100) == [(1, 0, 100), (2, 100, 100), (3, 200, 50)]
    assert len(plan_parts(MAX_PARTS * 10, 10)) == MAX_PARTS
    with pytest.raises(UploadInputError, match=f"needs {MAX_PARTS + 1} parts; the limit is {MAX_PARTS}"):
        plan_parts(MAX_PARTS * 10 + 1, 10)
    with pytest.raises(UploadInputError, match="part size must be positive"):
        plan_parts(10, 0)


async def test_a_part_size_that_needs_too_many_parts_fails_before_any_part(
    clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    api = FakeUploadApi(clock, single_max=0, part_size=1)
    file = local(tmp_path, MAX_PARTS + 1, "many.jsonl")
    with pytest.raises(
        PermanentStepError, match=f"source '{SOURCE}': many.jsonl: .* the limit is {MAX_PARTS}"
    ):
        await upload(api, clock, store, file)
    assert api.calls == {"initiate": 1}


async def test_an_empty_file_is_one_empty_put(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    (tmp_path / "empty.jsonl").touch()
    with pytest.raises(UploadInputError, match="the file is empty"):
        inspect_files([str(tmp_path / "empty.jsonl")])
    done = await upload(api, clock, store, local(tmp_path, 0))
    assert (done.mode, done.bytes, done.parts) == ("single", 0, 1)
    assert api.sessions[done.upload_session_id].parts == {0: b""}


async def test_an_empty_file_in_multipart_mode_is_one_empty_part(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    assert plan_parts(0, PART) == [(1, 0, 0)]
    api.mode_override = "multipart"
    done = await upload(api, clock, store, local(tmp_path, 0))
    assert (done.mode, done.parts) == ("multipart", 1)
    assert api.completed_parts == [[1]]
    assert api.sessions[done.upload_session_id].parts == {1: b""}


async def test_an_unknown_upload_mode_fails_and_is_not_checkpointed(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    api.mode_override = "streaming"
    with pytest.raises(PermanentStepError, match=f"source '{SOURCE}': the API chose an unknown upload mode"):
        await upload(api, clock, store, local(tmp_path, 10))
    assert store.records == {}


# --- complete -----------------------------------------------------------------------------------------


async def test_a_complete_with_unknown_outcome_is_read_back_not_resent(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    api.complete_error = OutcomeUnknown(
        method="POST", path="/complete", route="complete_upload", cause=TimeoutError()
    )
    done = await upload(api, clock, store, local(tmp_path, PART * 2))
    assert api.calls["complete"] == 1
    assert (done.dataset_id, done.source_id, done.ingest_run_id) == ("products", 7, "ing_1")


async def test_a_conflict_on_complete_stands_when_the_upload_is_not_complete(
    api: FakeUploadApi, clock: FakeClock, store: JsonStore, tmp_path: Path
) -> None:
    conflict = Conflict(status=409, method="POST", path="/complete", detail={"code": "upload_expired"})
    api.complete_error = conflict
    api.readiness_script = [("queued", {"upload_status": "expired"})]
    with pytest.raises(Conflict):
        await upload(api, clock, store, local(tmp_path, 10))


# --- readiness and hand-off ---------------------------------------------------------------------------

POLL = PollOptions(initial_seconds=1, cap_seconds=4, factor=2, deadline_seconds=60)


async def test_readiness_is_polled_with_backoff_until_ready(api: FakeUploadApi, clock: FakeClock) -> None:
    docs = {"documents": models.DocumentCounts(parsed=5, index_committed=4)}
    api.readiness_script = [
        ("queued", {}),
        Unavailable(status=503, method="GET", path="/readiness", detail="busy", retry_after=None),
        ("processing", {}),
        ("ready", docs),
    ]
    ready = await poll_upload_ready(api, clock, "ups_1", POLL, source_key=SOURCE)
    assert (ready.ingest_status, ready.documents, ready.polls) == ("ready", 4, 4)
    assert clock.sleeps == [2, 4, 4]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (("failed", {"error_message": "bad row 3"}), "ended failed: bad row 3"),
        (("reticulating", {}), "unknown status 'reticulating'"),
        (NotFound(status=404, method="GET", path="/readiness", detail="nope"), "ups_1 does not exist"),
    ],
    ids=["failed", "unknown-status", "not-found"],
)
async def test_readiness_failures_are_permanent(
    api: FakeUploadApi, clock: FakeClock, answer: Any, expected: str
) -> None:
    api.readiness_script = [answer]
    with pytest.raises(PermanentStepError, match=f"source '{SOURCE}': .*{expected}"):
        await poll_upload_ready(api, clock, "ups_1", POLL, source_key=SOURCE)


async def test_readiness_stops_at_its_deadline(api: FakeUploadApi, clock: FakeClock) -> None:
    api.readiness_script = [("processing", {})] * 100
    with pytest.raises(DeadlineExceeded, match="not ready after 60 s"):
        await poll_upload_ready(api, clock, "ups_1", POLL, source_key=SOURCE)
    assert 60 < clock.t <= 64


async def test_hand_off_resends_after_an_unknown_outcome_and_skips_without_data(
    api: FakeUploadApi,
) -> None:
    lost = OutcomeUnknown(method="POST", path="/enqueue", route="enqueue_ingest", cause=TimeoutError())
    api.enqueue_script = [lost, 12]
    handed = await hand_off_latest_run(api, 7, source_key=SOURCE)
    assert (handed.run_id, handed.ingest_run_ids) == (12, ["ing_1", "ing_2"])
    assert api.calls["enqueue"] == 2

    api.enqueue_script = [Conflict(status=409, method="POST", path="/e", detail={"code": "no_landed_data"})]
    skipped = await hand_off_latest_run(api, 7, source_key=SOURCE)
    assert skipped.skipped_reason == "no landed data"
    api.enqueue_script = [Conflict(status=409, method="POST", path="/e", detail={"code": "no_connection"})]
    with pytest.raises(Conflict):
        await hand_off_latest_run(api, 7, source_key=SOURCE)
