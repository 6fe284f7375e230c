"""A load-shedding pause that crosses workers: a 503/429 `Retry-After` seen by one shard of a fleet
slows every shard of the same tenant, on any worker.

Each process already pauses itself: its `RateGate` closes for the whole process. Other processes (the
other shards, on other machines) would keep sending until the API refuses them too. So the moment a
shard's gate closes is published as one Prefect Variable per (API, tenant), and every shard reads that
variable on a short interval and closes its own gate until the published moment. The variable holds a
wall-clock timestamp and the shard that saw the 503: nothing secret.

The longest pause wins. Prefect variables have no compare-and-set, so a shard that read the variable
before another's longer pause landed replaces it with its shorter one. Every shard therefore compares
what it reads with the longest pause it knows (its own or one it applied): a shorter one in its place is
written over again, so the longer pause is back within a watch interval while a shard that knows it runs.
A shard's own writes go out one at a time, in order, so they cannot overtake each other.

What it costs: one variable read per shard per `WATCH_SECONDS`, one write per new pause. What it does
not do: a pause shorter than the watch interval may end before another shard reads it (that shard's
own 503 still pauses it), and processes that are not sharded fleet runs (a `sync-source` run, a
`connect-source`) neither publish nor read it.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists
from pydantic import BaseModel

from splendor_api import RateGate

TAG = "splendor-api-pause"
PREFIX = "splendor-pause-"
# How often a shard looks for a pause another shard published; a Prefect API read each time.
WATCH_SECONDS = 1.0
# A pause that extends the last published one by less than this is not published again.
REPUBLISH_SLACK_SECONDS = 0.5

log = logging.getLogger(__name__)


def variable_name(api_base: str, tenant: str) -> str:
    digest = hashlib.sha256(f"{api_base}|{tenant}".encode()).hexdigest()
    return f"{PREFIX}{digest[:32]}"


class PauseRecord(BaseModel):
    until: float  # wall-clock seconds (time.time()): the shards may be on different machines
    by: str


def _parse(value: object) -> PauseRecord | None:
    """The variable's record, or None when it holds something else (nothing to compare with)."""
    try:
        return PauseRecord.model_validate(value)
    except ValueError:
        return None


class SharedPauseGate(RateGate):
    """A `RateGate` whose closing (the client calls `close_for` on a 503/429 Retry-After) is also
    handed to `publish`; a pause read from elsewhere closes it through `close_locally`, which does
    not publish it again."""

    def __init__(self, max_concurrency: int, publish: Callable[[float], None]) -> None:
        super().__init__(max_concurrency)
        self._publish = publish

    def close_for(self, seconds: float) -> None:
        super().close_for(seconds)
        if seconds > 0:
            self._publish(seconds)

    def close_locally(self, seconds: float) -> None:
        super().close_for(seconds)


class SharedPause:
    """Publishes this shard's pauses and applies the others'. Use `gate` as the client's gate and keep
    `running()` open around the work."""

    def __init__(
        self,
        api_base: str,
        tenant: str,
        label: str,
        max_concurrency: int,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = variable_name(api_base, tenant)
        self.label = label
        self.gate = SharedPauseGate(max_concurrency, self._on_local_pause)
        self._wall = wall
        # The longest pause this shard published or applied: what the variable must hold until it ends.
        self._known = PauseRecord(until=0.0, by=label)
        self._writes: set[asyncio.Task[None]] = set()
        self._writing = asyncio.Lock()
        self.published = 0
        self.applied = 0
        self.restored = 0

    def _on_local_pause(self, seconds: float) -> None:
        until = self._wall() + seconds
        if until <= self._known.until + REPUBLISH_SLACK_SECONDS:
            return
        self._known = PauseRecord(until=until, by=self.label)
        self._start_write(self._known)

    def _start_write(self, record: PauseRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._write(record))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, record: PauseRecord) -> None:
        value = record.model_dump(mode="json")
        try:
            async with self._writing, get_client() as client:
                current = await client.read_variable_by_name(self.name)
                if current is None:
                    try:
                        await client.create_variable(VariableCreate(name=self.name, value=value, tags=[TAG]))
                        self.published += 1
                        return
                    except ObjectAlreadyExists:
                        # Another shard created it meanwhile: compare with what it holds, as below.
                        current = await client.read_variable_by_name(self.name)
                stored = _parse(current.value) if current is not None else None
                if stored is not None and stored.until >= record.until:
                    return  # someone published a longer pause already
                await client.update_variable(VariableUpdate(name=self.name, value=value, tags=[TAG]))
            self.published += 1
        except (httpx.HTTPError, RuntimeError) as exc:
            # Only the others' courtesy is lost: this shard's own gate is closed already.
            log.warning("Could not publish a Splendor pause to the other shards: %s", exc)

    async def _read(self) -> PauseRecord | None:
        async with get_client() as client:
            variable = await client.read_variable_by_name(self.name)
        return None if variable is None else _parse(variable.value)

    async def watch_once(self) -> None:
        record = await self._read()
        now = self._wall()
        if record is not None and record.until > self._known.until:
            if record.until > now:
                self._known = record
                self.gate.close_locally(record.until - now)
                self.applied += 1
        elif (
            (record is None or record.until < self._known.until)
            and self._known.until - now > REPUBLISH_SLACK_SECONDS
            and not self._writes
        ):
            # The variable holds a shorter pause (or none) than one this shard knows, and no write of
            # this shard is on its way: a shard that read it before the longer one landed wrote over it.
            self.restored += 1
            self._start_write(self._known)

    async def _watch(self) -> None:
        while True:
            try:
                await self.watch_once()
            except (httpx.HTTPError, RuntimeError) as exc:
                log.debug("Reading the shared Splendor pause failed: %s", exc)
            await asyncio.sleep(WATCH_SECONDS)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["SharedPause"]:
        watcher = asyncio.create_task(self._watch())
        try:
            yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            # A write still in flight is allowed to land: other shards may still be running.
            if self._writes:
                await asyncio.gather(*self._writes, return_exceptions=True)
