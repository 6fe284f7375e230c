"""Start records kept as Prefect Variables: the one store every worker of a Prefect server shares.

Result storage may be local to a worker; the Prefect API never is. One variable per source, named
from a digest of (API base, tenant, source key) and tagged so they can be listed. Values hold run ids,
attempt numbers, digests of sync_ids and timestamps: nothing secret.
"""

import asyncio
import contextlib
import hashlib
import weakref
from collections.abc import AsyncIterator

import httpx
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_flows.engine.run_records import SourceRuns
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.orchestration.prefect_compat import read_variables_tagged

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
    digest = hashlib.sha256(f"{scope.api_base}|{scope.tenant}|{scope.source_key}".encode()).hexdigest()
    return f"{PREFIX}{digest[:32]}"


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
