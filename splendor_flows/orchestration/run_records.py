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
import contextlib
import os
import weakref
from collections.abc import AsyncIterator
from enum import StrEnum

import httpx
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from prefect.results import get_result_store
from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_api import ConfigError
from splendor_flows.engine.run_records import RunRecords, SourceRuns, StoredRunRecords, source_digest
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.engine.store import CheckpointStore
from splendor_flows.orchestration.checkpoint import CHECKPOINT_TTL
from splendor_flows.orchestration.prefect_compat import TaskResultCheckpoints, read_variables_tagged

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


def run_records(store: CheckpointStore | None = None) -> RunRecords:
    """The start records of this process. `store` is the checkpoint store the caller already holds;
    without one, the current task run's result store (the step tasks' checkpoints) is used."""
    if records_place() is RecordsPlace.RESULT_STORAGE:
        return StoredRunRecords(store or TaskResultCheckpoints(get_result_store(), CHECKPOINT_TTL))
    return PrefectRunRecords()


TAG = "splendor-run-record"
PREFIX = "splendor-runs-"
# Record calls in flight at once per event loop. Prefect's client pools 16 connections and keeps 8 alive:
# a fleet recording the starts of hundreds of sources at once would queue hundreds of requests inside
# that pool, whose bookkeeping grows with the square of its queue (a fifth of a 200-source shard's CPU
# when measured), and open connections only to close them. They wait here instead, on a semaphore.
CALLS_AT_ONCE = 8
_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _slot() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(CALLS_AT_ONCE)
    async with slots:
        yield


def variable_name(scope: ScopeLike) -> str:
    return f"{PREFIX}{source_digest(scope)}"


class PrefectRunRecords:
    def __init__(self) -> None:
        # Variables this instance last read as missing: written with a create first, not an update that
        # answers 404 (a failed call the server pays for too, once per source of a fleet).
        self._missing: set[str] = set()

    async def read(self, scope: ScopeLike) -> SourceRuns:
        name = variable_name(scope)
        async with _slot(), get_client() as client:
            variable = await client.read_variable_by_name(name)
        if variable is None:
            self._missing.add(name)
        else:
            self._missing.discard(name)
        return SourceRuns.model_validate(variable.value) if variable and variable.value else SourceRuns()

    async def write(self, scope: ScopeLike, runs: SourceRuns) -> None:
        name = variable_name(scope)
        value = runs.model_dump(mode="json")
        create_first = name in self._missing
        async with _slot(), get_client() as client:
            # Update first when the variable was there at the last read; a missing one answers 404, then
            # it is created. Two writers creating it at once: the loser's create fails with 409 and it
            # updates instead.
            for _ in range(2):
                if not create_first:
                    try:
                        await client.update_variable(VariableUpdate(name=name, value=value, tags=[TAG]))
                        self._missing.discard(name)
                        return
                    except httpx.HTTPStatusError as exc:
                        if exc.response.status_code != 404:
                            raise
                create_first = False
                try:
                    await client.create_variable(VariableCreate(name=name, value=value, tags=[TAG]))
                    self._missing.discard(name)
                    return
                except ObjectAlreadyExists:
                    continue

    def forget_hint(self, scope: ScopeLike) -> str:
        return f"run `prefect variable unset {variable_name(scope)}`"


async def aforget_all_run_records() -> int:
    """Delete every start record (the soak's sabotage mode; operators resetting a test server)."""
    names = [v.name for v in await read_variables_tagged(TAG) if v.name.startswith(PREFIX)]
    async with get_client() as client:
        for name in names:
            await client.delete_variable_by_name(name)
    return len(names)


def forget_all_run_records(api_url: str) -> int:
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(aforget_all_run_records())
