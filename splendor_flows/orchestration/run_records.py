"""Where the start records are kept (`engine.run_records`): Prefect Variables unless told otherwise.

Result storage may be local to a worker; the Prefect API never is. So by default each source's record
is a Prefect Variable, named from a digest of (API base, tenant, source key) and tagged so they can be
listed. That costs the server two or three calls and a `prefect.variable.updated` event per start,
which at fleet scale is most of its work per source (docs/fleet.md). A deployment whose result
storage every worker shares (a bucket, a network path: the production topology) sets
SPLENDOR_RUN_RECORDS=result-storage and the records sit beside the checkpoints instead. Values hold
run ids, attempt numbers, digests of sync_ids and timestamps: nothing secret.
"""

import asyncio
import os
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import httpx
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.client.schemas.objects import Variable
from prefect.exceptions import ObjectAlreadyExists
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.results import aget_default_result_storage, get_result_store
from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_api import ConfigError
from splendor_flows.engine.run_records import (
    RunRecords,
    SourceRuns,
    StartRecord,
    StoredRunRecords,
    source_digest,
)
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.orchestration.gathered import Gathered
from splendor_flows.orchestration.intent_variables import (
    GATHER_SECONDS,
    PER_VARIABLE,
    FreshListing,
    IntentWriter,
    merged,
    prune_settled,
)
from splendor_flows.orchestration.intent_variables import PREFIX as INTENTS_PREFIX
from splendor_flows.orchestration.intent_variables import TAG as INTENTS_TAG
from splendor_flows.orchestration.prefect_calls import prefect_call
from splendor_flows.orchestration.prefect_compat import read_variables_named, read_variables_tagged

RECORDS_ENV = "SPLENDOR_RUN_RECORDS"


class RecordsPlace(StrEnum):
    PREFECT_VARIABLES = "prefect-variables"
    RESULT_STORAGE = "result-storage"


def records_place() -> RecordsPlace:
    """Where this process keeps start records; a bad value fails before any call is made."""
    raw = os.environ.get(RECORDS_ENV, "").strip() or RecordsPlace.PREFECT_VARIABLES
    try:
        return RecordsPlace(raw)
    except ValueError:
        allowed = " or ".join(repr(p.value) for p in RecordsPlace)
        raise ConfigError(f"{RECORDS_ENV} must be {allowed}, got {raw!r}") from None


async def run_records(*, gather_intents: bool = False) -> RunRecords:
    """The start records of this process, from SPLENDOR_RUN_RECORDS (in a flow or task run).

    `gather_intents`: for a run that starts many sources at once (a fleet, a shard, a tick); in
    Variables their intents then go out as one write per batch instead of one per source."""
    if records_place() is RecordsPlace.RESULT_STORAGE:
        return StoredRunRecords(await ResultStorageFiles.current())
    return PrefectRunRecords(gather_intents=gather_intents)


class ResultStorageFiles:
    """Record files in the result storage block (`RecordFiles`)."""

    def __init__(self, storage: WritableFileSystem) -> None:
        self._storage = storage

    @classmethod
    async def current(cls) -> "ResultStorageFiles":
        """The storage the current run's results (and the steps' checkpoints) go to."""
        return cls(get_result_store().result_storage or await aget_default_result_storage())

    async def read(self, name: str) -> bytes | None:
        if isinstance(self._storage, LocalFileSystem):
            return await asyncio.to_thread(_read_if_there, self._local_path(name))
        try:
            return await self._storage.read_path(name)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise

    async def write(self, name: str, content: bytes) -> None:
        if isinstance(self._storage, LocalFileSystem):
            await asyncio.to_thread(_replace_file, self._local_path(name), content)
        else:
            # Object stores (S3, GCS, Azure) replace an object whole on every put.
            await self._storage.write_path(name, content)

    def _local_path(self, name: str) -> Path:
        assert isinstance(self._storage, LocalFileSystem)
        return Path(self._storage.basepath or ".").expanduser() / name


def _read_if_there(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _replace_file(path: Path, content: bytes) -> None:
    # Written aside, then renamed over: a reader on another machine never sees half a record.
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    aside.write_bytes(content)
    os.replace(aside, path)


def _is_missing(exc: Exception) -> bool:
    """A read that failed because the file is not there: fsspec file systems raise FileNotFoundError,
    boto3 (prefect-aws) a ClientError whose code is NoSuchKey or 404, google-cloud-storage (prefect-gcp)
    google.api_core's NotFound (`code` 404), azure-storage-blob (prefect-azure) ResourceNotFoundError
    (`status_code` 404). Recognised by those attributes: none of the SDKs is a dependency. Anything else
    (a 403 above all: a storage the worker may not read) is a failure."""
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code in ("NoSuchKey", "404", "NotFound"):
        return True
    # `code` of a Google error is an HTTPStatus (an int); `status_code` of an Azure one an int, or None.
    return 404 in (getattr(exc, "code", None), getattr(exc, "status_code", None))


TAG = "splendor-run-record"
PREFIX = "splendor-runs-"


def variable_name(scope: ScopeLike) -> str:
    return f"{PREFIX}{source_digest(scope)}"


class PrefectRunRecords:
    """Each source's records in a Variable of its own, and, with `gather_intents`, the intents of a run's
    many sources gathered into shared variables (orchestration.intent_variables)."""

    def __init__(self, *, gather_intents: bool = False) -> None:
        # Variables this instance last read as missing: written with a create first, not an update that
        # answers 404 (a failed call the server pays for too, once per source of a fleet).
        self._missing: set[str] = set()
        self._intents = FreshListing()
        self._writer = IntentWriter() if gather_intents else None
        # Records of many sources read in one call (a batch of a fleet reads them together).
        self._reads: Gathered[str, Variable | None] | None = (
            Gathered(_read_named, window=GATHER_SECONDS, size=PER_VARIABLE) if gather_intents else None
        )
        # Per source digest: the intents variables its last read took starts from (for `forget_hint`).
        self._intents_of: dict[str, list[str]] = {}

    async def read(self, scope: ScopeLike) -> SourceRuns:
        name = variable_name(scope)
        variable, intents = await asyncio.gather(
            self._reads.ask(name)
            if self._reads is not None
            else prefect_call(lambda client: client.read_variable_by_name(name)),
            self._intents.read(),
        )
        if variable is None:
            self._missing.add(name)
        else:
            self._missing.discard(name)
        runs = SourceRuns.model_validate(variable.value) if variable and variable.value else SourceRuns()
        digest = source_digest(scope)
        runs, self._intents_of[digest] = merged(runs, variable.updated if variable else None, digest, intents)
        return runs

    async def intend(self, scope: ScopeLike, runs: SourceRuns, start: StartRecord) -> None:
        if self._writer is None:
            await self.write(scope, runs.with_start(start))
        else:
            await self._writer.intend(source_digest(scope), start)

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        await self._write(scope, runs)
        if self._writer is not None:
            await self._writer.written(source_digest(scope), runs)

    async def _write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        name = variable_name(scope)
        value = runs.model_dump(mode="json")
        create_first = name in self._missing
        update = VariableUpdate(name=name, value=value, tags=[TAG])
        create = VariableCreate(name=name, value=value, tags=[TAG])
        # Update first when the variable was there at the last read; a missing one answers 404, then it
        # is created. Two writers creating it at once: the loser's create fails with 409 and it updates
        # instead.
        for _ in range(2):
            if not create_first:
                try:
                    await prefect_call(lambda client: client.update_variable(update))
                    self._missing.discard(name)
                    return
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
            create_first = False
            try:
                await prefect_call(lambda client: client.create_variable(create))
                self._missing.discard(name)
                return
            except ObjectAlreadyExists:
                continue

    def forget_hint(self, scope: ScopeLike) -> str:
        # Written now, the source's record outweighs any intents variable that names it (intent_variables).
        hint = f"run `prefect variable set {variable_name(scope)} '{{\"starts\": []}}' --overwrite`"
        shared = self._intents_of.get(source_digest(scope), [])
        if shared:
            hint += f" (its start is also in {', '.join(shared)}, shared with other sources: leave those)"
        return hint

    async def prune_settled(self) -> int:
        """Intents variables left by runs that did not finish, deleted once their sources wrote since."""
        return await prune_settled(TAG, PREFIX, datetime.now(UTC))


async def _read_named(names: list[str]) -> list[Variable | None]:
    found = {v.name: v for v in await read_variables_named(names)}
    return [found.get(name) for name in names]


async def aforget_all_run_records() -> int:
    """Delete every start record (the soak's sabotage mode; operators resetting a test server)."""
    names = [v.name for v in await read_variables_tagged(TAG) if v.name.startswith(PREFIX)]
    names += [v.name for v in await read_variables_tagged(INTENTS_TAG) if v.name.startswith(INTENTS_PREFIX)]
    async with get_client() as client:
        for name in names:
            await client.delete_variable_by_name(name)
    return len(names)


def forget_all_run_records(api_url: str) -> int:
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(aforget_all_run_records())
