"""The process's runtime context: what callers inject into the pipeline without threading it through
every flow and task parameter (those are stored and shown in the UI).

It lives in a context variable, not module globals: a value set by a test, the bench or the CLI applies
to the flows they start (contexts are copied into tasks) and is undone when they leave the block.
"""

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

import httpx

from splendor_api import RateGate, SplendorConfig

# (file name, bytes just sent): lets a terminal draw upload progress bars.
UploadProgress = Callable[[str, int], None]


@dataclass(frozen=True)
class Runtime:
    # An httpx transport for every Splendor client (tests script responses with MockTransport;
    # the bench counts calls). None: the network.
    transport: httpx.AsyncBaseTransport | None = None
    upload_progress: UploadProgress | None = None


_RUNTIME: ContextVar[Runtime] = ContextVar("splendor_runtime", default=Runtime())  # noqa: B039


def current_runtime() -> Runtime:
    return _RUNTIME.get()


@contextlib.contextmanager
def use_runtime(
    *, transport: httpx.AsyncBaseTransport | None = None, upload_progress: UploadProgress | None = None
) -> Iterator[Runtime]:
    """Apply these settings to everything started inside the block (unset arguments stay as they were)."""
    runtime = current_runtime()
    if transport is not None:
        runtime = replace(runtime, transport=transport)
    if upload_progress is not None:
        runtime = replace(runtime, upload_progress=upload_progress)
    token = _RUNTIME.set(runtime)
    try:
        yield runtime
    finally:
        _RUNTIME.reset(token)


# One gate per (event loop, API, tenant): a 503 Retry-After seen by one pipeline slows every pipeline of
# the loop that talks to the same tenant. A gate's primitives belong to its loop, so the registry is
# keyed on the loop object itself (weakly: a closed loop's gates go with it, and a new loop that
# happens to get a recycled id() can never receive a dead loop's gate).
_GATES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], RateGate]]" = (
    weakref.WeakKeyDictionary()
)


def shared_gate(config: SplendorConfig) -> RateGate:
    per_loop = _GATES.setdefault(asyncio.get_running_loop(), {})
    key = (config.api_base, config.tenant)
    gate = per_loop.get(key)
    if gate is None:
        gate = per_loop[key] = RateGate(max_concurrency=config.max_concurrency)
    return gate
