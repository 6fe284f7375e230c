"""Connector runs: planned when a sync starts, then read off the clock.

A run of duration D spends 0.1·D `pending`, then each attempt runs 0.9·D; an attempt Airbyte retries leaves
the run `incomplete` for 0.5·D before the next attempt starts (so N incomplete attempts make the run
proportionally longer, as a retried Airbyte job does). Because the status is a function of the stored
timeline and the current time, a restarted emulator continues the run exactly where it would have been."""

import hashlib
from dataclasses import dataclass

from splendor_emulator.catalog import generate_records, jsonl_bytes
from splendor_emulator.config import EmulatorConfig, ProviderConfig
from splendor_emulator.faults import FaultRegistry
from splendor_emulator.paths import object_path
from splendor_emulator.store import LandedFile, RunRec, SourceRec, Store

TERMINAL_RUN_STATUSES = frozenset(("succeeded", "failed", "cancelled"))


@dataclass(frozen=True)
class RunView:
    status: str
    started_at: float | None
    completed_at: float | None
    updated_at: float


def plan_run(
    *,
    run_id: int,
    source: SourceRec,
    provider: ProviderConfig,
    streams: list[str],
    trigger: str,
    now: float,
    config: EmulatorConfig,
    faults: FaultRegistry,
) -> RunRec:
    duration = config.sync_seconds if config.sync_seconds is not None else provider.sync_seconds
    tenant, key = source.tenant_id, source.source_key
    incomplete = faults.take_run("run_incomplete", tenant, key)
    failure = faults.take_run("run_fail", tenant, key)
    zero = faults.take_run("run_zero_records", tenant, key)
    counts: dict[str, int] = {}
    for name in streams:
        stream = provider.stream(name)
        default = stream.record_count if stream is not None else 0
        counts[name] = config.records_per_stream if config.records_per_stream is not None else default
    return RunRec(
        run_id=run_id,
        source_id=source.source_id,
        tenant_id=tenant,
        trigger=trigger,
        streams=streams,
        created_at=now,
        pending_s=0.1 * duration,
        attempt_s=0.9 * duration,
        gap_s=0.5 * duration,
        incomplete_attempts=incomplete.times if incomplete else 0,
        outcome="failed" if failure else "succeeded",
        zero_records=zero is not None,
        error_message=(
            (failure.error_message or f"Airbyte job job_{run_id} failed: source connector exited with code 1")
            if failure
            else None
        ),
        records_per_stream=counts,
    )


def _timeline(run: RunRec) -> list[tuple[float, str]]:
    moment = run.created_at
    events = [(moment, "pending")]
    moment += run.pending_s
    for attempt in range(run.incomplete_attempts + 1):
        events.append((moment, "running"))
        moment += run.attempt_s
        if attempt < run.incomplete_attempts:
            events.append((moment, "incomplete"))
            moment += run.gap_s
    events.append((moment, run.outcome))
    if run.cancelled_at is not None and run.cancelled_at < moment:
        events = [e for e in events if e[0] <= run.cancelled_at] + [(run.cancelled_at, "cancelled")]
    return events


def view_run(run: RunRec, now: float) -> RunView:
    events = _timeline(run)
    current = events[0]
    for event in events:
        if event[0] <= now:
            current = event
    status = current[1]
    started = next((t for t, s in events if s == "running" and t <= now), None)
    completed = current[0] if status in TERMINAL_RUN_STATUSES else None
    return RunView(status=status, started_at=started, completed_at=completed, updated_at=current[0])


def land_run(
    run: RunRec, source: SourceRec, provider: ProviderConfig, config: EmulatorConfig, store: Store
) -> None:
    """Write one JSONL object per stream for a succeeded run (once). Called with the store lock held."""
    if run.landed:
        return
    bucket_root = config.bucket_root
    assert bucket_root is not None
    files: list[LandedFile] = []
    for name in run.streams:
        count = 0 if run.zero_records else run.records_per_stream.get(name, 0)
        stream = provider.stream(name)
        if count == 0 or stream is None:
            continue
        records = generate_records(
            stream, count, seed=f"{source.tenant_id}/{source.source_id}/{run.run_id}/{name}"
        )
        payload = jsonl_bytes(records)
        key = f"{source.prefix}{source.source_key}/{name}/run-{run.run_id}.jsonl"
        path = object_path(bucket_root, source.bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        etag = f'"{hashlib.md5(payload).hexdigest()}"'
        files.append(
            LandedFile(
                stream=name, bucket=source.bucket, key=key, records=count, bytes=len(payload), etag=etag
            )
        )
    run.files = files
    run.landed = True
    store.put(run)
