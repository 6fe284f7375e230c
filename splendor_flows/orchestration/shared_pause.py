"""A load-shedding pause that crosses workers: a 503/429 `Retry-After` seen by one shard of a fleet
slows every shard of the same tenant, on any worker.

Each process already pauses itself: its `RateGate` closes for the whole process. Other processes (the
other shards, on other machines) would keep sending until the API refuses them too. So the moment a
shard's gate closes is published as one Prefect Variable per (API, tenant), and every shard reads that
variable on a short interval and closes its own gate until the published moment. The variable holds a
wall-clock timestamp and the shard that saw the 503: nothing secret.

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
        self._known_until = 0.0  # the latest pause end this shard published or applied
        self._writes: set[asyncio.Task[None]] = set()
        self.published = 0
        self.applied = 0

    def _on_local_pause(self, seconds: float) -> None:
        until = self._wall() + seconds
        if until <= self._known_until + REPUBLISH_SLACK_SECONDS:
            return
        self._known_until = until
        task = asyncio.get_running_loop().create_task(self._write(until))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, until: float) -> None:
        value = PauseRecord(until=until, by=self.label).model_dump(mode="json")
        try:
            async with get_client() as client:
                current = await client.read_variable_by_name(self.name)
                if current is not None:
                    with contextlib.suppress(ValueError):
                        if PauseRecord.model_validate(current.value).until >= until:
                            return  # someone published a longer pause already
                    await client.update_variable(VariableUpdate(name=self.name, value=value, tags=[TAG]))
                else:
                    with contextlib.suppress(ObjectAlreadyExists):
                        await client.create_variable(VariableCreate(name=self.name, value=value, tags=[TAG]))
            self.published += 1
        except (httpx.HTTPError, RuntimeError) as exc:
            # Only the others' courtesy is lost: this shard's own gate is closed already.
            log.warning("Could not publish a Splendor pause to the other shards: %s", exc)

    async def _read(self) -> PauseRecord | None:
        async with get_client() as client:
            variable = await client.read_variable_by_name(self.name)
        if variable is None:
            return None
        try:
            return PauseRecord.model_validate(variable.value)
        except ValueError:
            return None

    async def watch_once(self) -> None:
        record = await self._read()
        if record is None:
            return
        remaining = record.until - self._wall()
        if remaining > 0 and record.until > self._known_until:
            self._known_until = record.until
            self.gate.close_locally(remaining)
            self.applied += 1

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
