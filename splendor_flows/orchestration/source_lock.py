"""One pipeline acts on a source at a time, whoever started it: a leased slot of a per-source limit.

Every entry point that starts, polls or hands a source's run to ingestion (sync-source, connect-source,
the fleet and its shards, the scheduled tick, repair-ingest, after-upload, the CLI) holds the one slot
of the source's Prefect global concurrency limit `splendor-source-<digest>` while it does. The Prefect
server keeps the slot; every worker of the tenant asks the same server, so the exclusion spans machines
without a lock service of our own. The slot is leased: the holder renews the lease every
`RENEW_EVERY_SECONDS`, and a holder that dies (a SIGKILLed worker, a lost machine) stops renewing, so
the lease runs out after `LEASE_SECONDS` and the server's repossessor service (every 15 s by default)
gives the slot back. A dead holder therefore releases its source within `RELEASE_BOUND_SECONDS`.

The slot is also what makes the start records safe to read, change and write back (engine.run_records):
only the holder writes them, so two writers can never interleave.

Cost per source and sync: one acquire call and one release call to the Prefect server (plus one renewal
per 20 s held, and one create the first time a source is ever held). Waiting for a busy source asks the
server again with a backoff. Prefect's own `concurrency()` context manager is not used: it starts a
service thread per distinct set of limit names and emits two events per acquisition, which for a
fleet of a thousand sources is a thousand threads and two thousand events.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run

from splendor_flows.engine.errors import StepError
from splendor_flows.engine.run_records import source_digest
from splendor_flows.engine.scope import ScopeLike

LIMIT_PREFIX = "splendor-source-"
# Prefect's minimum lease. A shorter one would release a dead holder's sources sooner.
LEASE_SECONDS = 60.0
RENEW_EVERY_SECONDS = 20.0
# The server's repossessor looks for expired leases this often
# (PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS).
REPOSSESSOR_SECONDS = 15.0
RELEASE_BOUND_SECONDS = LEASE_SECONDS + REPOSSESSOR_SECONDS
# Waiting for a busy source: ask again after this long, growing toward the cap (with jitter, so the
# waiters of one tick do not ask in step).
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 10.0


def limit_name(scope: ScopeLike) -> str:
    """The per-source limit's name: a digest of (API base, tenant, source key), as the start records."""
    return f"{LIMIT_PREFIX}{source_digest(scope)}"


class SourceBusy(StepError):
    """Another pipeline held the source for longer than this one was willing to wait."""

    def __init__(self, source_key: str, waited: float) -> None:
        super().__init__(
            "lock",
            source_key,
            f"another pipeline has been acting on this source for the last {waited:.0f} s (a sync, a "
            "fleet, a repair or an upload's ingestion)",
            "let it finish and run again; a holder that died releases the source within "
            f"{RELEASE_BOUND_SECONDS:.0f} s",
        )
        self.waited = waited


class SourceLeaseLost(StepError):
    """The server no longer knows this holder's lease: another pipeline may now hold the source."""

    def __init__(self, source_key: str) -> None:
        super().__init__(
            "lock",
            source_key,
            "the lease on this source ran out before it could be renewed (the Prefect server was "
            "unreachable or restarted), so this pipeline stopped acting on it",
            "run again: the resume attaches to the run in flight",
        )


def _holder() -> ConcurrencyLeaseHolder | None:
    # Shown by the server next to the lease: which flow run holds the source.
    run_id = flow_run.get_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None


async def _create_limit(name: str) -> None:
    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


async def _try_acquire(name: str) -> UUID | None:
    """The lease of the source's slot, or None when another holder has it."""
    for _ in range(2):
        async with get_client() as client:
            try:
                response = await client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=_holder()
                )
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 423:
                    return None
                raise
        body = response.json()
        lease_id = UUID(body["lease_id"])
        if body.get("limits"):
            return lease_id
        # A source held for the first time: its limit does not exist yet (the server then grants an
        # empty lease that excludes nobody). Give that back, create the limit and ask again.
        async with get_client() as client:
            await client.release_concurrency_slots_with_lease(lease_id)
        await _create_limit(name)
    raise RuntimeError(f"Prefect global concurrency limit {name!r} could not be created")


async def _renew(lease_id: UUID, holder: asyncio.Task[object], lost: list[bool]) -> None:
    """Keep the lease alive; when the server says it is gone, stop the holder's work."""
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        try:
            async with get_client() as client:
                await client.renew_concurrency_lease(lease_id, lease_duration=LEASE_SECONDS)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (404, 410):
                lost.append(True)
                holder.cancel()
                return
        except Exception:
            # The server is briefly unreachable: the lease still has LEASE_SECONDS from the last renewal
            # to run, and the next try may get through.
            continue


@contextlib.asynccontextmanager
async def hold_source(scope: ScopeLike, *, wait_seconds: float) -> AsyncIterator[float]:
    """Hold the source's slot for the body; yields how long it waited for it.

    Raises SourceBusy when another holder keeps it past `wait_seconds`, SourceLeaseLost when the lease
    is lost while held (the body is cancelled then: going on could start a second sync).
    """
    name = limit_name(scope)
    started = time.monotonic()
    delay = FIRST_RETRY_SECONDS
    while (lease_id := await _try_acquire(name)) is None:
        waited = time.monotonic() - started
        if waited >= wait_seconds:
            raise SourceBusy(scope.source_key, waited)
        pause = min(delay * (0.5 + random.random()), wait_seconds - waited)
        await asyncio.sleep(max(0.0, pause))
        delay = min(MAX_RETRY_SECONDS, delay * 2)
    waited = time.monotonic() - started
    task = asyncio.current_task()
    assert task is not None
    lost: list[bool] = []
    renewal = asyncio.create_task(_renew(lease_id, task, lost))
    try:
        yield waited
    except asyncio.CancelledError:
        if lost:
            raise SourceLeaseLost(scope.source_key) from None
        raise
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        if not lost:
            # Released now rather than at the lease's end: the next holder need not wait a minute.
            with contextlib.suppress(Exception):
                async with get_client() as client:
                    await client.release_concurrency_slots_with_lease(lease_id)
