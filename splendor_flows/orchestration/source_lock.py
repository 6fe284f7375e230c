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
per 20 s held). A source's limit is created when it is onboarded (`connect`, `apply`:
`ensure_source_limits`), or else the first time anything holds it. Waiting for a busy source asks the
server again with a backoff. Prefect's own `concurrency()` context manager is not used: it starts a
service thread per distinct set of limit names and emits two events per acquisition, which for a
fleet of a thousand sources is a thousand threads and two thousand events.
"""

import asyncio
import contextlib
import functools
import os
import random
import time
from collections.abc import AsyncIterator, Iterable
from uuid import UUID

import httpx
from prefect import get_client, get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse
from prefect.context import AsyncClientContext
from prefect.exceptions import MissingContextError, ObjectAlreadyExists
from prefect.logging import get_logger
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from splendor_api import ConfigError
from splendor_flows.engine.errors import StepError
from splendor_flows.engine.run_records import source_digest
from splendor_flows.engine.scope import ScopeLike
from splendor_flows.orchestration.gathered import Gathered
from splendor_flows.orchestration.prefect_calls import prefect_call

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


# Whether the Prefect server runs its repossessor service (which takes back expired leases): "on" or
# "off". Unset: off for an ephemeral server (no PREFECT_API_URL: a CLI run, the demo), on otherwise. A
# server started in-process for tests (Prefect's test harness) is ephemeral too, whatever its URL: its
# users say "off".
REPOSSESSOR_ENV = "SPLENDOR_PREFECT_REPOSSESSOR"


def _no_repossessor() -> bool:
    """Whether nobody on the server side takes back a dead holder's slot, so a waiter must."""
    raw = os.environ.get(REPOSSESSOR_ENV, "").strip().lower()
    if raw in ("on", "off"):
        return raw == "off"
    if raw:
        raise ConfigError(f"{REPOSSESSOR_ENV} must be 'on' or 'off', got {raw!r}")
    return not PREFECT_API_URL.value()


async def _reclaim(name: str, source_key: str) -> None:
    """Give back a slot that no live holder keeps, on an ephemeral server.

    An ephemeral server runs no repossessor service and keeps leases in the memory of the process that
    started it, so a CLI run stopped before it released its source (killed, or a Ctrl-C that stopped its
    server first) leaves the slot taken in the database for good. After the release bound, a waiter on
    such a server takes it back. Two CLI runs of one source at the same moment in two terminals could then
    both act on it; Splendor's 409 `sync_in_progress` still keeps them to one run.
    """
    _warn(
        f"source '{source_key}' has been held for {RELEASE_BOUND_SECONDS:.0f} s on an ephemeral Prefect "
        "server, which never takes back a dead holder's slot: taking it back"
    )
    async with get_client() as client:
        await client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))


def _warn(message: str) -> None:
    try:
        get_run_logger().warning(message)
    except MissingContextError:
        # Outside a run (a script holding a source): Prefect's own console logger.
        get_logger("splendor.source_lock").warning(message)


async def _create_limit(name: str) -> bool:
    """Create the limit `name`; False when it existed already."""
    try:
        await prefect_call(
            lambda client: client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=1)
            )
        )
    except ObjectAlreadyExists:
        return False
    return True


# Prefect's largest page of a listing (PREFECT_API_DEFAULT_LIMIT).
LIMITS_PAGE = 200
# Up to this many sources (a `connect`, a small file) are created outright, an existing one answering 409:
# cheaper than listing every limit of a big tenant, page by page, to skip them.
CREATE_OUTRIGHT_UP_TO = 20


async def _existing_limit_names() -> set[str]:
    """The names of every source limit on the server, a page at a time."""
    names: set[str] = set()
    offset = 0
    while True:
        page = await prefect_call(functools.partial(_limits_page, offset=offset))
        names.update(limit.name for limit in page if limit.name.startswith(LIMIT_PREFIX))
        if len(page) < LIMITS_PAGE:
            return names
        offset += LIMITS_PAGE


async def _limits_page(client: PrefectClient, offset: int) -> list[GlobalConcurrencyLimitResponse]:
    return await client.read_global_concurrency_limits(limit=LIMITS_PAGE, offset=offset)


async def ensure_source_limits(scopes: Iterable[ScopeLike]) -> int:
    """Create the limits of these sources that do not exist yet; returns how many were created.

    Onboarding calls this (`connect`, `apply`), so that a source's first sync does not: a limit is
    otherwise made the first time something holds its source, and a tenant's first fleet or tick over
    a thousand sources then creates them before any start can go, one call and about 6 ms of the
    server's CPU each (Prefect has no bulk create): 6-7 s on the stack (docs/fleet.md). Many sources
    are first looked up in one listing, so only the missing ones cost a call.
    """
    wanted = sorted({limit_name(scope) for scope in scopes})
    # One client for every call (a flow run's own, or one made here): outside a run, as `apply` is,
    # each call would otherwise open a client of its own: 1,000 limits took 33.9 s on the stack, 5.9 s so.
    async with AsyncClientContext.get_or_create():
        if len(wanted) > CREATE_OUTRIGHT_UP_TO:
            existing = await _existing_limit_names()
            wanted = [name for name in wanted if name not in existing]
        return sum(await asyncio.gather(*(_create_limit(name) for name in wanted)))


# Answers that mean "ask again later": the slot is taken (423), or the server is too busy to say (503).
TAKEN = 423
NOT_NOW = (TAKEN, 503)


async def _increment(names: list[str]) -> tuple[UUID, set[str]] | int:
    """One lease on the slot of every limit in `names` that exists, or the refusal's status: TAKEN when
    one of them is held, 503 when the server is too busy to grant it now."""
    holder = _holder()
    try:
        response = await prefect_call(
            lambda client: client.increment_concurrency_slots_with_lease(
                names=names, slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=holder
            )
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in NOT_NOW:
            return exc.response.status_code
        raise
    body = response.json()
    return UUID(body["lease_id"]), {str(limit["name"]) for limit in body.get("limits") or []}


async def _release(lease_id: UUID) -> None:
    await prefect_call(lambda client: client.release_concurrency_slots_with_lease(lease_id))


async def _renew_once(lease_id: UUID) -> None:
    await prefect_call(lambda client: client.renew_concurrency_lease(lease_id, lease_duration=LEASE_SECONDS))


async def _try_acquire(name: str) -> UUID | None:
    """The lease of the source's slot, or None when another holder has it."""
    for _ in range(2):
        granted = await _increment([name])
        if isinstance(granted, int):
            return None
        lease_id, held = granted
        if name in held:
            return lease_id
        # A source held for the first time: its limit does not exist yet (the server then grants an
        # empty lease that excludes nobody). Give that back, create the limit and ask again.
        await _release(lease_id)
        await _create_limit(name)
    raise RuntimeError(f"Prefect global concurrency limit {name!r} could not be created")


async def _renew(lease_id: UUID, holder: asyncio.Task[object], lost: list[bool]) -> None:
    """Keep the lease alive; when the server says it is gone, stop the holder's work."""
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        try:
            await _renew_once(lease_id)
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
    reclaimed = False
    while (lease_id := await _try_acquire(name)) is None:
        waited = time.monotonic() - started
        if waited >= wait_seconds:
            raise SourceBusy(scope.source_key, waited)
        if not reclaimed and waited >= RELEASE_BOUND_SECONDS and _no_repossessor():
            await _reclaim(name, scope.source_key)
            reclaimed = True
            continue
        pause = min(delay * (0.5 + random.random()), wait_seconds - waited)
        if not reclaimed and waited < RELEASE_BOUND_SECONDS:
            pause = min(pause, RELEASE_BOUND_SECONDS - waited)  # look again right at the bound
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
                await _release(lease_id)


class BatchHolds:
    """The holds of a run that acts on many sources at once (a fleet, a shard, a tick), taken in batches.

    Holding each source on its own costs the Prefect server an acquire and a release per source and sync:
    for a fleet of a thousand sources, two thousand calls. Here the sources that ask within
    `GATHER_SECONDS` of each other (a fleet starts them all together) share one lease on all their
    limits, taken in one call and renewed once; it is released when the last of them is done. The price:
    a source that finishes early stays held until its batch-mates finish, so batches are kept to
    `BATCH_SIZE` sources. A lease is all or nothing on the server: when a source of the batch is held
    elsewhere, the batch is asked for again as two halves, and so on down to `SPLIT_DOWN_TO` sources,
    whose sources then fall back to a hold of their own each (and wait, as `hold_source` does).
    """

    GATHER_SECONDS = 0.05
    # The batches of a run are asked for one at a time, so a fleet of a thousand sources started together
    # waits for 1,000 / BATCH_SIZE asks before its last source can start: with 25, bench-sharded's
    # 1,000-source fleet took 1.66-1.84 times the floor, with 100 1.41 and 1.52 (docs/fleet.md). What a
    # bigger batch costs: a source stays held until the slowest of more batch-mates is done.
    BATCH_SIZE = 100
    # A batch with a source held elsewhere is split until its halves are this small: one taken source
    # among 100 costs about a dozen asks, not a hundred holds of one source each.
    SPLIT_DOWN_TO = 4

    def __init__(self, wait_seconds: float, sources: Iterable[ScopeLike] = ()) -> None:
        """`sources`: every source the run may hold, when known up front (a fleet, a tick)."""
        self.wait_seconds = wait_seconds
        # Limits of announced sources not yet seen to exist. The first batch made mostly of sources never
        # held creates all of these at once: the fleet's other sources are then likely new too (a tenant's
        # first fleet over sources that neither `connect` nor `apply` onboarded), and creating them batch
        # by batch, each batch asking twice around its creations one batch at a time, made such a first
        # run of 1,000 sources on the stack take about twice as long as the next one.
        self._unseen = {limit_name(scope) for scope in sources}
        self._gathered: Gathered[str, _Batch | None] = Gathered(
            self._acquire, window=self.GATHER_SECONDS, size=self.BATCH_SIZE, unclaimed=_leave
        )
        # Each granted batch's renewal, which releases it once its last member left.
        self._kept: set[asyncio.Task[None]] = set()
        self._one_at_a_time: asyncio.Lock | None = None

    @contextlib.asynccontextmanager
    async def hold(self, scope: ScopeLike) -> AsyncIterator[None]:
        name = limit_name(scope)
        batch = await self._gathered.ask(name)
        if batch is None:
            async with hold_source(scope, wait_seconds=self.wait_seconds):
                yield
            return
        task = asyncio.current_task()
        assert task is not None
        batch.tasks.add(task)
        try:
            if batch.lost:
                raise SourceLeaseLost(scope.source_key)
            yield
        except asyncio.CancelledError:
            if batch.lost:
                raise SourceLeaseLost(scope.source_key) from None
            raise
        finally:
            batch.tasks.discard(task)
            batch.leave(name)

    async def _acquire(self, names: list[str]) -> list["_Batch | None"]:
        """Each source's batch, in the order of `names`; None for a source that must hold on its own (and
        report a failure as its own)."""
        # Filled as leases are granted, so a failure after some keeps them in use, not leaked.
        granted: dict[str, _Batch] = {}
        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Lock()
        with contextlib.suppress(Exception):
            # One batch asked for at a time: each is a write transaction on every limit it names, and a
            # SQLite-backed server answers concurrent ones with "database is locked" and retries.
            async with self._one_at_a_time:
                await self._ask(sorted(set(names)), granted)
        for batch in set(granted.values()):
            task = asyncio.create_task(batch.keep())
            self._kept.add(task)
            task.add_done_callback(self._kept.discard)
        return [granted.get(name) for name in names]

    async def _ask(self, names: list[str], granted: dict[str, "_Batch"]) -> None:
        """One lease for `names` into `granted`; when one of them is held elsewhere, one per half."""
        for _ in range(2):
            answer = await _increment(names)
            if answer == TAKEN and len(names) > self.SPLIT_DOWN_TO:
                half = len(names) // 2
                await self._ask(names[:half], granted)
                await self._ask(names[half:], granted)
                return
            if isinstance(answer, int):
                return
            lease_id, held = answer
            self._unseen -= held
            if held == set(names):
                batch = _Batch(lease_id, set(names))
                granted.update(dict.fromkeys(names, batch))
                return
            # Sources held for the first time have no limit yet: create theirs and ask once more. All at
            # once (within the calls' bound): one after the other, the first run of a 1,000-source fleet
            # spent most of its time creating limits while every later batch waited.
            await _release(lease_id)
            missing = set(names) - held
            if 2 * len(missing) >= len(names):
                missing |= self._unseen
            self._unseen -= missing
            await asyncio.gather(*(_create_limit(name) for name in sorted(missing)))


def _leave(name: str, batch: "_Batch | None") -> None:
    """A source whose run was cancelled while it waited for its batch: it will never leave it itself."""
    if batch is not None:
        batch.leave(name)


class _Batch:
    """One lease on the slots of several sources, released when the last of them is done."""

    def __init__(self, lease_id: UUID, names: set[str]) -> None:
        self.lease_id = lease_id
        self.members = set(names)
        self.lost = False
        # The members' tasks: cancelled when the lease is lost, since going on could start a second sync.
        self.tasks: set[asyncio.Task[object]] = set()
        self._done = asyncio.Event()

    def leave(self, name: str) -> None:
        self.members.discard(name)
        if not self.members:
            self._done.set()

    async def keep(self) -> None:
        """Renew the lease until every member left, then release it."""
        while not self._done.is_set():
            try:
                await asyncio.wait_for(self._done.wait(), timeout=RENEW_EVERY_SECONDS)
                break
            except TimeoutError:
                pass
            try:
                await _renew_once(self.lease_id)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code in (404, 410):
                    self.lost = True
                    for task in self.tasks:
                        task.cancel()
                    return
            except Exception:
                continue
        with contextlib.suppress(Exception):
            await _release(self.lease_id)
