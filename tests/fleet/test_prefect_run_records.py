"""Start records in Prefect Variables: written with as few Prefect API calls as is safe, since a fleet
writes them for every source."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from splendor_api import ConfigError
from splendor_flows.engine.run_records import SourceRuns, StartRecord, StoredRunRecords
from splendor_flows.orchestration.run_records import (
    PrefectRunRecords,
    RecordsPlace,
    ResultStorageFiles,
    records_place,
)
from splendor_flows.orchestration.scope import Scope


def _scope(source_key: str) -> Scope:
    return Scope(api_base="http://splendor.test", tenant="acme", source_key=source_key, sync_id="s1")


def _start(attempt: int, run_id: int | None) -> StartRecord:
    return StartRecord(pipeline="p", attempt=attempt, requested_at=datetime.now(UTC), run_id=run_id)


async def test_a_record_read_as_missing_is_created_then_updated(source_key: str) -> None:
    records = PrefectRunRecords()
    scope = _scope(source_key)
    assert await records.read(scope) == SourceRuns()
    first = SourceRuns().with_start(_start(1, None))
    await records.write(scope, first)
    second = first.with_start(_start(1, 42))
    await records.write(scope, second)
    assert await PrefectRunRecords().read(scope) == second


async def test_a_record_created_by_another_writer_since_the_read_is_updated_not_lost(source_key: str) -> None:
    scope = _scope(source_key)
    mine, theirs = PrefectRunRecords(), PrefectRunRecords()
    assert await mine.read(scope) == SourceRuns()
    assert await theirs.read(scope) == SourceRuns()
    await theirs.write(scope, SourceRuns().with_start(_start(1, 7)))
    # `mine` still believes the variable is missing: its create gets 409 and it updates instead.
    merged = SourceRuns().with_start(_start(1, 7)).with_start(_start(2, 8))
    await mine.write(scope, merged)
    assert await PrefectRunRecords().read(scope) == merged


# --- records as files of the result storage (SPLENDOR_RUN_RECORDS=result-storage) --------------------


async def test_record_files_in_a_local_storage_read_missing_then_round_trip(tmp_path: Path) -> None:
    files = ResultStorageFiles(LocalFileSystem(basepath=str(tmp_path)))
    records = StoredRunRecords(files)
    scope = _scope("billing")
    assert await records.read(scope) == SourceRuns()
    runs = SourceRuns().with_start(_start(1, None)).with_start(_start(2, 9))
    await records.write(scope, runs)
    # Another "machine": a new store over the same shared path.
    assert (
        await StoredRunRecords(ResultStorageFiles(LocalFileSystem(basepath=str(tmp_path)))).read(scope)
        == runs
    )
    # Replaced by rename: no half-written file, no leftover beside it.
    [written] = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written.name.endswith(".json") and written.parent.name == StoredRunRecords.PREFIX


async def test_record_files_in_an_fsspec_storage_read_missing_then_round_trip() -> None:
    # fsspec's in-memory file system stands for a bucket: same FileNotFoundError for a missing key.
    records = StoredRunRecords(
        ResultStorageFiles(RemoteFileSystem(basepath=f"memory://records-{uuid.uuid4().hex}"))
    )
    scope = _scope("billing")
    assert await records.read(scope) == SourceRuns()
    runs = SourceRuns().with_start(_start(1, 4))
    await records.write(scope, runs)
    assert await records.read(scope) == runs


class _S3Error(Exception):
    """Shaped as botocore's ClientError: the code sits in `response`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _Bucket(WritableFileSystem):
    """An object store whose every read fails with `error`."""

    error: str = "AccessDenied"

    async def read_path(self, path: str) -> bytes:
        raise _S3Error(self.error)

    async def write_path(self, path: str, content: bytes) -> None:
        raise AssertionError("not written in these tests")


async def test_an_object_store_missing_key_reads_as_no_record_and_other_failures_raise() -> None:
    scope = _scope("billing")
    assert await StoredRunRecords(ResultStorageFiles(_Bucket(error="NoSuchKey"))).read(scope) == SourceRuns()
    # Denied, throttled, unreachable: not "no record", which would let a resume start a second run.
    with pytest.raises(_S3Error, match="AccessDenied"):
        await StoredRunRecords(ResultStorageFiles(_Bucket())).read(scope)


def test_a_bad_place_for_records_is_refused_naming_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPLENDOR_RUN_RECORDS", "redis")
    with pytest.raises(
        ConfigError, match="SPLENDOR_RUN_RECORDS must be 'prefect-variables' or 'result-storage', got 'redis'"
    ):
        records_place()
    monkeypatch.delenv("SPLENDOR_RUN_RECORDS")
    assert records_place() is RecordsPlace.PREFECT_VARIABLES
