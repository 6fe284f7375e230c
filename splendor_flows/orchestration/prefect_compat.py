"""Every use of Prefect beyond its public API, in one place.

Each section names what it relies on and has a test in tests/compat/ that fails when a Prefect
upgrade changes it, so an upgrade breaks a named test instead of a production run. Sections are
independent (own names; the imports they need are listed at the top); add new ones at the end.
"""

import logging
from collections.abc import Awaitable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar, cast

import pydantic
from prefect import State, Task, get_client
from prefect.client.schemas.objects import Variable
from prefect.results import ResultStore, get_result_store
from prefect.types import DateTime
from prefect.types._datetime import now as prefect_now
from pydantic import BaseModel, ValidationError

# ==================================================================================================
# Section: variables filtered by tag or by name, paged (credential fingerprints, start records)
# Relies on: the server route POST /variables/filter and its body {"variables": {"tags": {"all_"}}} or
# {"variables": {"name": {"any_"}}}, with "limit" and "offset", sent through PrefectClient.request.
# Test: tests/compat/test_variables.py
# ==================================================================================================

_VARIABLE_LIST = pydantic.TypeAdapter(list[Variable])


async def read_variables_tagged(tag: str, *, page_size: int = 200) -> list[Variable]:
    """Every variable carrying ``tag``, read a page at a time.

    `PrefectClient.read_variables` takes only a limit (no tag filter, no offset), and the server caps
    any page, so one call cannot return them all; this posts the server's own filter body instead.
    """
    return await _read_variables({"tags": {"all_": [tag]}}, page_size)


async def read_variables_named(names: list[str], *, page_size: int = 200) -> list[Variable]:
    """The variables of these names that exist, in as many calls as pages (one for up to `page_size`)."""
    return await _read_variables({"name": {"any_": names}}, page_size)


async def _read_variables(variables_filter: dict[str, Any], page_size: int) -> list[Variable]:
    found: dict[str, Variable] = {}
    async with get_client() as client:
        offset = 0
        while True:
            response = await client.request(
                "POST",
                "/variables/filter",
                json={"variables": variables_filter, "limit": page_size, "offset": offset},
            )
            page = _VARIABLE_LIST.validate_python(response.json())
            if page and all(v.name in found for v in page):
                # A server that ignores `offset` would otherwise make this loop forever.
                raise RuntimeError("POST /variables/filter returned the same page twice: offset ignored?")
            found.update((v.name, v) for v in page)
            if len(page) < page_size:
                return list(found.values())
            offset += page_size


# ==================================================================================================
# Section: the terminal handler of run logs (CLI)
# Relies on: Prefect's default logging config (prefect/logging/logging.yml): the run loggers
# `prefect.flow_runs` / `prefect.task_runs` carry the API handler and propagate to the root logger,
# whose PrefectConsoleHandler prints to the terminal; the flow and task engines log a failure with
# its traceback (exc_info) on those loggers. Test: tests/compat/test_console_logging.py
# ==================================================================================================

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def is_run_log(record: logging.LogRecord) -> bool:
    """True for a record of a flow or task run's logger (the ones the API handler sends to the server)."""
    return any(record.name == name or record.name.startswith(f"{name}.") for name in RUN_LOGGERS)


def console_handlers() -> list[logging.Handler]:
    """The handlers that print run logs on the terminal.

    A filter on these changes what the terminal shows without touching the run log on the server:
    the API handler sits on the run loggers themselves, not on the root.
    """
    # Importing prefect (done by this module) has applied its logging config already.
    from prefect.logging.handlers import PrefectConsoleHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]


def run_log_api_handlers() -> dict[str, list[logging.Handler]]:
    """The handlers that send each run logger's records to the Prefect API (for the compat test)."""
    from prefect.logging.handlers import APILogHandler

    return {
        name: [h for h in logging.getLogger(name).handlers if isinstance(h, APILogHandler)]
        for name in RUN_LOGGERS
    }


# ==================================================================================================
# Section: checkpoints in the result store, outside a task run (the fleet's sync/ingest steps)
# Relies on: a cached task's checkpoint being the record its cache transaction writes to the result
# store under the cache key; ResultStore.aupdate_for_task / aexists / aread(...).result / awrite(obj,
# key, expiration); prefect.types._datetime.now. Test: tests/compat/test_results_store.py
# ==================================================================================================
# The fleet runs the per-step tasks' steps in-process and reads and writes their records itself,
# through the store configured as the task configures it (same storage, same JSON serializer), so
# either side finds what the other wrote.

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


class TaskResultCheckpoints:
    """An engine `CheckpointStore` over the result store of a checkpointed task."""

    def __init__(self, store: ResultStore, ttl: timedelta) -> None:
        self._store = store
        self._ttl = ttl
        # Who reads and writes, for record locks (unused here): given once, or the store works it out
        # (a hostname lookup among others) on every call, thousands of times in a fleet.
        self._holder = ResultStore.generate_default_holder()

    @classmethod
    async def for_task(cls, task: Task[..., Any], ttl: timedelta) -> "TaskResultCheckpoints":
        """The store `task`'s results go to, as configured in the current flow run."""
        return cls(await get_result_store().aupdate_for_task(task), ttl)

    async def get(self, key: str, model: type[M]) -> M | None:
        # One read, where aexists() + aread() read and decode the file twice. A failed read means
        # missing, as aexists() has it: a checkpoint is a speed-up, every step re-reads Splendor.
        try:
            record = await self._store.aread(key, holder=self._holder)
        except Exception:
            return None
        expiration = record.metadata.expiration
        if expiration is not None and expiration <= prefect_now("UTC"):
            return None
        value = record.result
        if isinstance(value, model):
            return value
        try:
            return model.model_validate(value)
        except ValidationError:
            return None  # an older layout: act as if the step had not run (every step re-reads Splendor)

    async def put(self, key: str, value: BaseModel) -> None:
        # The model itself, not a dict: a task that later finds this record returns it as its result.
        expiration = cast(DateTime, prefect_now("UTC") + self._ttl)
        await self._store.awrite(obj=value, key=key, expiration=expiration, holder=self._holder)


# ==================================================================================================
# Section: an async task's result and whether its checkpoint answered (the per-step pipeline)
# Relies on: an async task called with return_state=True returning a coroutine of its State (Prefect's
# overloads say State); a cache hit ending Completed with the name "Cached"; State.aresult.
# Test: tests/compat/test_results_store.py
# ==================================================================================================


async def call_task(task: Task[..., Coroutine[Any, Any, R]], *args: Any) -> tuple[R, bool]:
    """Run an async task in the current flow run: its result, and whether a checkpoint answered."""
    state = await cast(Awaitable[State[R]], task(*args, return_state=True))
    return await state.aresult(), state.name == "Cached"
