"""What the steps of one source run with: the API, the time, who it is for and who listens."""

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from splendor_flows.engine.client_protocol import SyncApi
from splendor_flows.engine.clock import Clock, SystemClock
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.report import Reporter
from splendor_flows.engine.run_records import RunRecords
from splendor_flows.engine.scope import ScopeLike


class Deferred:
    """Writes a step need not wait for: they run beside the next steps and are settled later.

    The one use: a fleet records a started run's id while it already waits for that run. The start's
    intent is on record before the start is sent, so until the id lands a resume elsewhere finds the
    run by listing the source's runs; nothing depends on the id being written first. Waiting for it
    put every source's first poll behind the fleet's queue of record writes (measured: detection
    p95 5.8 s instead of 0.5 s on the test server, `make bench`).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, asyncio.Task[None]]] = []

    def add(self, what: str, write: Coroutine[Any, Any, None]) -> None:
        self._pending.append((what, asyncio.ensure_future(write)))

    async def settle(self, report: Reporter) -> None:
        """Wait for every pending write; one that failed is a warning, not a failure of the source (the
        intent recorded before it still makes a resume look before it starts)."""
        pending, self._pending = self._pending, []
        for what, task in pending:
            try:
                await task
            except Exception as exc:
                report.log("warning", f"Could not write {what} ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class SourceContext:
    api: SyncApi
    scope: ScopeLike
    report: Reporter
    clock: Clock = field(default_factory=SystemClock)
    # Durations of earlier runs, to aim polls at the expected end; None polls on the plain backoff.
    history: RunHistory | None = None
    # Where starts are recorded for every worker to see; None: this process is the only one (tests).
    records: RunRecords | None = None
    # Where a caller that does not wait for the run-id record puts it (a fleet); None writes it inline.
    deferred: Deferred | None = None
