"""Every use of Prefect beyond its public API, in one place.

Each section names what it relies on and has a test in tests/compat/ that fails when a Prefect
upgrade changes it, so an upgrade breaks a named test instead of a production run. Sections are
independent (own names; the imports they need are listed at the top); add new ones at the end.
"""

from collections.abc import Awaitable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar, cast

from prefect import State, Task
from prefect.results import ResultStore, get_result_store
from prefect.types import DateTime
from prefect.types._datetime import now as prefect_now
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


# ==================================================================================================
# Section: checkpoints in the result store, outside a task run (the fleet's sync/ingest steps)
# Relies on: a cached task's checkpoint being the record its cache transaction writes to the result
# store under the cache key; ResultStore.aupdate_for_task / aexists / aread(...).result / awrite(obj,
# key, expiration); prefect.types._datetime.now. Test: tests/compat/test_results_store.py
# ==================================================================================================
# The fleet runs the per-step tasks' steps in-process and reads and writes their records itself,
# through the store configured as the task configures it (same storage, same JSON serializer), so
# either side finds what the other wrote.


class TaskResultCheckpoints:
    """An engine `CheckpointStore` over the result store of a checkpointed task."""

    def __init__(self, store: ResultStore, ttl: timedelta) -> None:
        self._store = store
        self._ttl = ttl

    @classmethod
    async def for_task(cls, task: Task[..., Any], ttl: timedelta) -> "TaskResultCheckpoints":
        """The store `task`'s results go to, as configured in the current flow run."""
        return cls(await get_result_store().aupdate_for_task(task), ttl)

    async def get(self, key: str, model: type[M]) -> M | None:
        if not await self._store.aexists(key):  # also False once the record has expired
            return None
        value = (await self._store.aread(key)).result
        if isinstance(value, model):
            return value
        try:
            return model.model_validate(value)
        except ValidationError:
            return None  # an older layout: act as if the step had not run (every step re-reads Splendor)

    async def put(self, key: str, value: BaseModel) -> None:
        # The model itself, not a dict: a task that later finds this record returns it as its result.
        expiration = cast(DateTime, prefect_now("UTC") + self._ttl)
        await self._store.awrite(obj=value, key=key, expiration=expiration)


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
