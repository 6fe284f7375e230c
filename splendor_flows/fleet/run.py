"""The fleet: every source of a connectors file synced concurrently inside one flow run.

Bounds and isolation:
- API concurrency: one HTTP client and one `RateGate` for the whole fleet, sized `max_concurrency`.
  Every source's requests queue on it, and a 503/429 `Retry-After` seen by any source closes it
  for all of them (the backend is shedding load: the others backing off is the point).
- Across flow runs and workers: when the Prefect global concurrency limit named `concurrency_limit`
  (per tenant: `splendor-api-<tenant>`) exists, the fleet, or each shard of a sharded fleet, holds
  its share of the slots for its whole duration: min(max_concurrency, limit // shards). One acquire
  per run, not one per request: slot acquisition is a server round trip with polling, far too slow
  to wrap each of thousands of calls. A limit of 0 can never grant a slot, so the fleet refuses it
  at once instead of waiting forever.
- Shards (`shards` > 1): a parent run starts one child run per shard (splendor_flows/fleet/shards.py); each
  child syncs the sources whose stable hash falls in its shard (`shard_of`). A 503 seen by one
  shard pauses the others too (orchestration/shared_pause.py).
- Failures: each source is tried (and retried) on its own; a failing source is recorded and the
  rest go on. The flow fails at the end, after the summary artifact is published, if any source failed.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from prefect import get_client, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field, model_validator

from splendor_api import ConfigError, RateGate, SplendorClient, models
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.polling import PollOptions
from splendor_flows.engine.sync import MAX_TOTAL_ATTEMPTS
from splendor_flows.fleet.source import (
    FleetContext,
    SourceOutcome,
    SourceStatus,
    StartsOut,
    fleet_source,
    not_onboarded,
)
from splendor_flows.orchestration.checkpoint import CHECKPOINT_TTL
from splendor_flows.orchestration.connector_secrets import remember_credentials, remember_credentials_of
from splendor_flows.orchestration.engine_adapter import run_history
from splendor_flows.orchestration.prefect_compat import TaskResultCheckpoints
from splendor_flows.orchestration.run_records import PrefectRunRecords, records_place, run_records
from splendor_flows.orchestration.runtime import current_runtime
from splendor_flows.orchestration.scope import Scope, default_sync_id
from splendor_flows.orchestration.shared_pause import SharedPause
from splendor_flows.orchestration.source_lock import BatchHolds
from splendor_flows.orchestration.splendor_clients import load_config
from splendor_flows.specs.connectors_file import load_connectors
from splendor_flows.tasks.sync import start_sync

PROGRESS_EVERY_SECONDS = 5.0
# The progress artifact waits at most this long for the fleet's starts to be out before it is created.
PROGRESS_FIRST_WAIT_SECONDS = 30.0
# `{tenant}` is replaced by the credentials' tenant: one limit bounds every fleet of that tenant.
DEFAULT_CONCURRENCY_LIMIT = "splendor-api-{tenant}"
# The default child deployment of a sharded fleet (prefect.yaml): the same flow, without the one-run
# limit of `sync-fleet`, which would keep the children queued behind their own parent forever.
DEFAULT_SHARD_DEPLOYMENT = "sync-fleet/sync-fleet-shard"
MAX_SHARDS = 64
# Slots of the global limit are leased; a shard whose worker died gives its slots back when the lease
# runs out (Prefect's minimum, renewed every 45 s while the shard lives), so a resumed shard waits at
# most about this long for them.
SLOT_LEASE_SECONDS = 60.0


def shard_of(source_key: str, shards: int) -> int:
    """The shard a source belongs to: stable across runs, machines and Python processes (no `hash()`,
    which is salted per process), so a re-run sends every source to the same shard and sync_id."""
    digest = hashlib.sha256(source_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def limit_name(template: str | None, tenant: str) -> str | None:
    return template.replace("{tenant}", tenant) if template else None


class FleetOptions(BaseModel):
    connectors_file: str
    only: list[str] | None = None
    max_concurrency: int = Field(default=50, ge=1, le=1000)
    credentials_block: str | None = None
    sync_id: str | None = None
    trigger: Literal["manual", "scheduled", "backfill"] = "scheduled"
    max_sync_attempts: int = Field(default=2, ge=1, le=MAX_TOTAL_ATTEMPTS)
    poll: PollOptions = PollOptions()
    wait_for_ingest: bool = False
    concurrency_limit: str | None = DEFAULT_CONCURRENCY_LIMIT
    shards: int = Field(default=1, ge=1, le=MAX_SHARDS)
    shard: int | None = Field(default=None, ge=0)
    shard_deployment: str = DEFAULT_SHARD_DEPLOYMENT

    @model_validator(mode="after")
    def _shard_in_range(self) -> "FleetOptions":
        if self.shard is not None and self.shard >= self.shards:
            raise ValueError(
                f"shard {self.shard} is out of range for {self.shards} shard(s) (0-{self.shards - 1})"
            )
        return self

    @property
    def is_parent(self) -> bool:
        return self.shards > 1 and self.shard is None


class ShardRun(BaseModel):
    """One child run of a sharded fleet, as its parent saw it end."""

    shard: int
    flow_run_id: str
    flow_run_name: str
    state: str
    sources: int
    succeeded: int
    failed: int
    rescheduled: bool = False


class FleetSummary(BaseModel):
    tenant: str
    sync_id: str
    sources: int
    succeeded: int
    failed: int
    # Held by another pipeline for the whole wait (ticks only): that pipeline syncs them.
    busy: int = 0
    resumed: int
    refresh_calls: int
    # Slots of the global limit this run held (a sharded parent holds none: its children do).
    api_slots: int
    outcomes: list[SourceOutcome]
    shard: int | None = None
    shard_runs: list[ShardRun] = []

    @classmethod
    def of(
        cls, tenant: str, sync_id: str, outcomes: list[SourceOutcome], *, api_slots: int, **extra: Any
    ) -> "FleetSummary":
        """The summary of these outcomes: the counts are derived from them, never passed alongside."""
        return cls(
            tenant=tenant,
            sync_id=sync_id,
            sources=len(outcomes),
            succeeded=sum(o.status == SourceStatus.SUCCEEDED for o in outcomes),
            failed=sum(o.status == SourceStatus.FAILED for o in outcomes),
            busy=sum(o.status == SourceStatus.BUSY for o in outcomes),
            resumed=sum(o.resumed for o in outcomes),
            refresh_calls=sum(o.refresh_calls for o in outcomes),
            api_slots=api_slots,
            outcomes=outcomes,
            **extra,
        )


class FleetFailed(RuntimeError):
    """Some sources failed; the others finished and the summary artifact lists every source."""

    def __init__(self, message: str, summary: FleetSummary) -> None:
        super().__init__(message)
        self.summary = summary

    @classmethod
    def of(
        cls, summary: FleetSummary, see: str, shards_not_completed: list[str] | None = None
    ) -> "FleetFailed":
        """The one wording of a fleet's failure, sharded or not: what failed, where to look, how to resume."""
        failed = [o.source_key for o in summary.outcomes if o.status == SourceStatus.FAILED]
        names = ", ".join(failed[:10]) + (" …" if len(failed) > 10 else "")
        if shards_not_completed is None:
            what = f"({names}); the others finished"
        else:
            # A sharded fleet can fail with no source failed: a shard that never completed.
            what = f"({names or 'none'}); shards not completed: {', '.join(shards_not_completed) or 'none'}"
        return cls(
            f"{len(failed)} of {len(summary.outcomes)} source(s) failed {what}. {see}; re-run with "
            f"sync_id={summary.sync_id} to retry only what is unfinished.",
            summary,
        )


class ConcurrencyLimitClosed(ConfigError):
    """The global concurrency limit the fleet is told to share has 0 slots: no run can ever start.

    A configuration error (permanent, printed as one line by the CLI), not a reason to wait.
    """


@contextlib.asynccontextmanager
async def fleet_slots(limit_name: str | None, wanted: int, shards: int = 1) -> AsyncIterator[int]:
    """Hold this fleet's share of the tenant-wide limit, when one exists; yields the slots to use.

    A shard takes limit // shards (at least 1), so the shards of one fleet run side by side instead of
    the first one taking every slot and the others waiting for it to finish; together they never hold
    more than the limit, so calls in flight across all workers stay within it.
    """
    logger = get_run_logger()
    if limit_name:
        async with get_client() as prefect:
            try:
                limit = await prefect.read_global_concurrency_limit_by_name(limit_name)
            except ObjectNotFound:
                limit = None
        if limit is not None and limit.active:
            if limit.limit < 1:
                raise ConcurrencyLimitClosed(
                    f"global concurrency limit '{limit_name}' allows 0 slots, so this fleet would wait "
                    f"forever: raise it (`prefect gcl update {limit_name} --limit 5`), disable it "
                    f"(`prefect gcl disable {limit_name}`), or run with another concurrency_limit "
                    "(empty: no shared limit)"
                )
            slots = min(wanted, max(1, limit.limit // shards))
            logger.info("Taking %s slot(s) of global concurrency limit '%s'", slots, limit_name)
            async with concurrency(limit_name, occupy=slots, strict=True, lease_duration=SLOT_LEASE_SECONDS):
                yield slots
            return
        logger.info("No active global concurrency limit '%s': bounding this run alone", limit_name)
    yield wanted


async def _report_progress(ctx: FleetContext, total: int, finished: list[int]) -> None:
    # Created once the starts are out, not with them: on a SQLite-backed server its write, at the moment
    # the fleet asked for its first batch of holds, held that ask back about 2 s (the answer a 503).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.starts.all_sent.wait(), PROGRESS_FIRST_WAIT_SECONDS)
    artifact = await acreate_progress_artifact(
        progress=100.0 * finished[0] / max(1, total),
        key="splendor-fleet-progress",
        description=f"{total} sources",
    )
    last = -1
    while True:
        await asyncio.sleep(PROGRESS_EVERY_SECONDS)
        if finished[0] != last:
            last = finished[0]
            await aupdate_progress_artifact(artifact, 100.0 * last / max(1, total))


def longest_first(history: RunHistory, tenant: str, keys: list[str]) -> list[str]:
    """The sources in the order their starts should go out: the longest expected syncs first.

    Starts do not all leave at once (each waits for its hold, its start record and a request slot), so
    the last ones leave seconds after the first. A source whose sync is expected to be long cannot
    afford that delay at the end; a short one can: started first, the long syncs end the fleet about
    when they would have alone. Sources without history (which may be long too) go first, in their order.
    """
    expected = {key: history.expectation(tenant, key) for key in keys}
    return sorted(keys, key=lambda key: -(e.median if (e := expected[key]) is not None else float("inf")))


async def _sync_all(
    ctx: FleetContext, keys: list[str], remote: dict[str, models.Source]
) -> list[SourceOutcome]:
    finished = [0]

    async def sync(source_key: str) -> SourceOutcome:
        source = remote.get(source_key)
        if source is None:
            return not_onboarded(source_key)
        return await fleet_source(ctx, source_key, source.source_id)

    async def one(source_key: str) -> SourceOutcome:
        try:
            return await sync(source_key)
        finally:
            ctx.starts.sent(source_key)  # or never will: the others' run-id records need not wait for it
            finished[0] += 1

    progress = asyncio.create_task(_report_progress(ctx, len(keys), finished))
    try:
        outcomes = await asyncio.gather(*(one(key) for key in longest_first(ctx.history, ctx.tenant, keys)))
        by_key = {o.source_key: o for o in outcomes}
        return [by_key[key] for key in keys]
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await progress


async def _prune_settled_intents(records: PrefectRunRecords) -> None:
    """Delete the intents variables runs killed mid-way left behind, once their sources are written since;
    a failure here is no failure of the fleet."""
    try:
        pruned = await records.prune_settled()
    except Exception as exc:
        get_run_logger().warning("Could not prune settled start intents (%s)", type(exc).__name__)
        return
    if pruned:
        get_run_logger().info("Pruned %s intents variable(s) left by runs that did not finish", pruned)


def summary_rows(outcomes: list[SourceOutcome]) -> list[dict[str, object]]:
    ordered = sorted(outcomes, key=lambda o: (o.status != SourceStatus.FAILED, o.source_key))
    return [
        {
            "source_key": o.source_key,
            "status": o.status,
            "failed_step": o.step if o.status == SourceStatus.FAILED else "",
            "run_id": o.run_id,
            "run_status": o.run_status,
            "records": o.records_synced,
            "attempts": o.sync_attempts,
            "refresh_calls": o.refresh_calls,
            "ingest": o.ingest_status,
            "resumed": o.resumed,
            "note": o.error or "; ".join(o.warnings),
        }
        for o in ordered
    ]


def _shard_label(summary: FleetSummary) -> str:
    return "" if summary.shard is None else f" (shard {summary.shard})"


async def publish(summary: FleetSummary) -> None:
    title = f"Fleet sync{_shard_label(summary)}: {summary.succeeded} of {summary.sources} sources succeeded"
    failed = [o for o in summary.outcomes if o.status == SourceStatus.FAILED]
    lines = "\n".join(f"- `{o.source_key}`: {o.error}" for o in failed[:50]) or "- none"
    more = f"\n- … and {len(failed) - 50} more (see the table)" if len(failed) > 50 else ""
    await acreate_markdown_artifact(
        key="splendor-fleet-summary",
        description="Fleet sync summary",
        markdown=f"""# {title}

| tenant | sync_id (re-run with it to resume) | failed | resumed | refresh calls |
|---|---|---|---|---|
| `{summary.tenant}` | `{summary.sync_id}` | {summary.failed} | {summary.resumed} | {summary.refresh_calls} |

## Failed sources

{lines}{more}
""",
    )
    await acreate_table_artifact(
        key="splendor-fleet-sources",
        table=summary_rows(summary.outcomes),
        description=f"Every source of fleet sync {summary.sync_id}",
    )


async def run_fleet(options: FleetOptions) -> FleetSummary:
    """The fleet in this flow run: every selected source, or those of one shard (`options.shard`)."""
    specs = load_connectors(options.connectors_file).select(options.only)
    keys = [spec.source_key for spec in specs]
    if options.shard is not None:
        keys = [key for key in keys if shard_of(key, options.shards) == options.shard]
    mine = set(keys)
    await remember_credentials(spec.credentials_secret for spec in specs if spec.source_key in mine)
    return await sync_sources(keys, options)


# A fleet run someone asked for waits this long for a source another pipeline holds (a sync of a big
# source may take that long), then reports it failed.
FLEET_SOURCE_WAIT_SECONDS = 3600.0


async def sync_sources(
    keys: list[str],
    options: FleetOptions,
    *,
    source_wait_seconds: float = FLEET_SOURCE_WAIT_SECONDS,
    skip_busy: bool = False,
) -> FleetSummary:
    """Sync these sources of the tenant concurrently in this flow run (a fleet, a shard, a tick).

    Each source is held (`source_lock`) while it is synced; one held elsewhere for longer than
    `source_wait_seconds` is failed, or with `skip_busy` left to its holder and reported busy.
    Publishes the summary; raises `FleetFailed` when a source failed.
    """
    return await finish(
        await synced_summary(keys, options, source_wait_seconds=source_wait_seconds, skip_busy=skip_busy)
    )


async def finish(summary: FleetSummary) -> FleetSummary:
    """Publish the summary's artifacts; raise `FleetFailed` naming the failed sources, if any."""
    await publish(summary)
    if summary.failed:
        raise FleetFailed.of(summary, "See the 'splendor-fleet-summary' artifact")
    get_run_logger().info("Fleet done: %s source(s) synced", summary.succeeded)
    return summary


async def synced_summary(
    keys: list[str],
    options: FleetOptions,
    *,
    source_wait_seconds: float = FLEET_SOURCE_WAIT_SECONDS,
    skip_busy: bool = False,
) -> FleetSummary:
    """`sync_sources` without publishing or raising: for a run that syncs its sources in several goes."""
    logger = get_run_logger()
    config = await load_config(options.credentials_block)
    records_place()  # a bad setting stops the fleet here, before any source is touched
    tenant = config.tenant
    # The sources' credentials, masked in the table, logs and events like the token (runs may quote them).
    await remember_credentials_of(tenant, keys)
    sync_id = default_sync_id(options.sync_id)
    where = "" if options.shard is None else f" (shard {options.shard} of {options.shards})"
    logger.info("Fleet of %s source(s)%s for tenant %s, sync_id=%s", len(keys), where, tenant, sync_id)
    history = run_history()
    limit = limit_name(options.concurrency_limit, tenant)
    async with fleet_slots(limit, options.max_concurrency, options.shards) as slots:
        config = config.model_copy(update={"max_concurrency": slots})
        async with contextlib.AsyncExitStack() as stack:
            gate: RateGate
            if options.shard is not None:
                # Other shards of this fleet run in other processes: share 503 pauses with them.
                label = f"shard {options.shard} of {options.shards}, sync_id {sync_id}"
                pause = await stack.enter_async_context(
                    SharedPause(config.api_base, tenant, label, slots).running()
                )
                gate = pause.gate
            else:
                gate = RateGate(slots)
            client = await stack.enter_async_context(
                SplendorClient(config, gate=gate, transport=current_runtime().transport)
            )
            await client.preflight()
            # One listing for the whole fleet: per-source lookups would list every source N times.
            remote = {s.source_key: s for s in await client.list_sources()}
            # Many sources start at once: their intents are written together (intent_variables).
            records = await run_records(gather_intents=True)
            ctx = FleetContext(
                client=client,
                tenant=tenant,
                sync_id=sync_id,
                credentials_block=options.credentials_block,
                trigger=options.trigger,
                max_sync_attempts=options.max_sync_attempts,
                poll=options.poll,
                wait_for_ingest=options.wait_for_ingest,
                history=history,
                store=await TaskResultCheckpoints.for_task(start_sync, CHECKPOINT_TTL),
                records=records,
                holds=BatchHolds(
                    wait_seconds=source_wait_seconds,
                    sources=[
                        Scope(api_base=config.api_base, tenant=tenant, source_key=key, sync_id=sync_id)
                        for key in keys
                        if key in remote
                    ],
                ),
                skip_busy=skip_busy,
                starts=StartsOut(keys),
            )
            try:
                outcomes = await _sync_all(ctx, keys, remote)
            finally:
                history.save()
            if isinstance(records, PrefectRunRecords):
                await _prune_settled_intents(records)
    return FleetSummary.of(tenant, sync_id, outcomes, api_slots=slots, shard=options.shard)
