"""Checkpoints: what a finished step leaves behind so a resumed pipeline skips it.

One key function serves every caller: the Prefect cache policy of the per-step tasks and the fleet's
store compute the same key for the same (step, scope, inputs), so a pipeline can be picked up by
either. The key covers the version, the API base, the tenant, the source key, the sync_id, the step,
its ordinal inputs (the source id and attempt of a start, a run id) and a digest of its other inputs
(the spec a source is created from, the streams of a connection, ...). A resume against another API,
or after the spec was edited, therefore finds no checkpoint and re-reads Splendor: it never reuses
an id that meant something else. The key leaves out the flow-run id and the code: a UI
"Retry" (same run) and a new run given the same sync_id both find the finished steps, and a fix
deployed between failure and retry does not throw them away. Bump CACHE_VERSION to drop every
checkpoint on purpose.

Checkpoints are a speed-up: every step re-reads Splendor before acting, so losing them costs calls,
never correctness.
"""

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from splendor_flows.engine.scope import ScopeLike

CACHE_VERSION = "v2"

M = TypeVar("M", bound=BaseModel)


def _key_part(value: str) -> str:
    # Keys become paths in result storage: a '/' in a source key would nest directories.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64]


def checkpoint_key(
    step: str, scope: ScopeLike, *, inputs: Mapping[str, Any] | None = None, **ordinals: int | str
) -> str:
    """The storage key of `step`'s checkpoint.

    `ordinals` tell apart repeats of a step in one sync and show in the key; `inputs` are whatever
    else the step's result depends on, bound through the digest only.
    """
    extra = "".join(f"-{name}{value}" for name, value in sorted(ordinals.items()))
    bound = json.dumps(to_jsonable_python(dict(inputs or {})), sort_keys=True, separators=(",", ":"))
    where = f"{scope.api_base}|{scope.tenant}|{scope.source_key}|{scope.sync_id}"
    raw = f"{CACHE_VERSION}|{where}|{step}{extra}|{bound}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return (
        f"splendor-{CACHE_VERSION}/{_key_part(scope.tenant)}/{_key_part(scope.source_key)}/"
        f"{_key_part(scope.sync_id)}/{step}{_key_part(extra)}-{digest}"
    )


class CheckpointStore(Protocol):
    async def get(self, key: str, model: type[M]) -> M | None:
        """The live checkpoint under `key`, or None (missing or expired)."""
        ...

    async def put(self, key: str, value: BaseModel) -> None: ...


class MemoryStore:
    """Checkpoints in a dict: engine tests, and runs that need no resume across processes."""

    def __init__(self) -> None:
        self.saved: dict[str, BaseModel] = {}

    async def get(self, key: str, model: type[M]) -> M | None:
        value = self.saved.get(key)
        return None if value is None else model.model_validate(value.model_dump())

    async def put(self, key: str, value: BaseModel) -> None:
        self.saved[key] = value


async def checkpointed(
    store: CheckpointStore, key: str, model: type[M], produce: Callable[[], Awaitable[M]]
) -> tuple[M, bool]:
    """The checkpoint under `key`, or produce the value and store it. Returns (value, from_checkpoint)."""
    found = await store.get(key, model)
    if found is not None:
        return found, True
    value = await produce()
    await store.put(key, value)
    return value, False
