"""`python -m soak.window`: how wide is the duplicate-sync window on an API that cannot list runs?

Without `GET /v1/admin/airbyte-sources/{id}/runs`, a start-sync whose answer is lost (the server
committed the run, then the connection died) is resolved by asking again: a `409 sync_in_progress`
names the run, and the pipeline attaches. The second ask starts another run only if the first one had
already finished by then. This measures that gap, the time from the lost start's commit to the
re-ask, with the real client and the engine's `start_or_attach` against the emulator run with
`list_runs_route=False`, and counts the runs each trial made. Two ways to lose the answer:

- `drop`: the connection dies right after the commit (the emulator's `drop_after` fault): the client
  knows at once;
- `held`: the answer is held past the client's read timeout (a transport that forwards the request,
  then times out), so the client knows only when its read timeout expires.

Each with runs longer than the gap (expected: never a second run) and with runs shorter than it (the
limit, made to happen).
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from splendor_api import SplendorClient, SplendorConfig, models
from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.report import RecordingReporter
from splendor_flows.engine.run_records import MemoryRunRecords

START_SYNC = "POST /v1/admin/airbyte-sources/{source_id}/sync"
TENANT = "acme"


@dataclass(frozen=True)
class Scope:
    api_base: str
    tenant: str
    source_key: str
    sync_id: str


class HoldStartOnce(httpx.AsyncBaseTransport):
    """Forwards every request; the next start-sync reaches the server, and its answer never arrives."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hold_seconds: float) -> None:
        self.inner = inner
        self.hold_seconds = hold_seconds
        self.armed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.armed and request.method == "POST" and request.url.path.endswith("/sync"):
            self.armed = False
            await response.aclose()
            await asyncio.sleep(self.hold_seconds)
            raise httpx.ReadTimeout("answer held past the read timeout", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Window:
    loss: str
    sync_seconds: float
    gaps: list[float]
    runs_per_trial: list[int]

    def row(self) -> str:
        gaps = sorted(self.gaps)
        p95 = gaps[min(len(gaps) - 1, round(0.95 * (len(gaps) - 1)))]
        seconds = self.sync_seconds
        dup = sum(1 for n in self.runs_per_trial if n > 1)
        return (
            f"| {self.loss} | {seconds:g} s | {len(gaps)} | "
            f"{1000 * statistics.median(gaps):.1f} / {1000 * p95:.1f} / {1000 * gaps[-1]:.1f} ms | {dup} |"
        )


async def _onboard(client: SplendorClient, key: str) -> int:
    created = await client.create_airbyte_source(
        models.CreateAirbyteSource(
            provider_key="stripe",
            connector_key="stripe",
            connector_name="Stripe",
            source_key=key,
            source_name=key,
            dataset_id="window",
            bucket="window-bucket",
            iam_role_arn="arn:aws:iam::123456789012:role/window",
            streams=["charges"],
        )
    )
    source_id = created.source.source_id
    await client.provision(source_id, {"api_key": "sk_test_window", "account_id": "acct_window"})
    await client.create_connection(source_id, ["charges"])
    return source_id


def _starts_of(emu: Emulator, source_id: int) -> list[dict[str, Any]]:
    return [
        m
        for m in emu.mutations()
        if m["route"] == START_SYNC.split(" ", 1)[1] and int(m["path_params"]["source_id"]) == source_id
    ]


async def measure(emu: Emulator, loss: str, sync_seconds: float, trials: int) -> Window:
    """`trials` lost starts, each on a new source of `emu` (whose runs last `sync_seconds`)."""
    from splendor_flows.engine.sync import start_or_attach

    config = SplendorConfig(
        api_base=emu.base_url,
        tenant_id=TENANT,
        token=SecretStr("acme-admin-token"),
        max_attempts=3,
        read_timeout=HELD_READ_TIMEOUT,
    )
    hold = HoldStartOnce(httpx.AsyncHTTPTransport(), HELD_READ_TIMEOUT)
    gaps: list[float] = []
    runs_per_trial: list[int] = []
    async with SplendorClient(config, transport=hold) as client:
        for trial in range(trials):
            key = f"window-{sync_seconds:g}-{trial}-{time.monotonic_ns()}"
            source_id = await _onboard(client, key)
            scope = Scope(emu.base_url, TENANT, key, f"window-{trial}")
            ctx = SourceContext(
                api=client, scope=scope, report=RecordingReporter(), records=MemoryRunRecords()
            )
            if loss == "drop":
                # The next start-sync is committed, then its connection is closed without an answer.
                emu.add_fault(kind="drop_after", route=START_SYNC, count=1)
            else:
                hold.armed = True
            await start_or_attach(ctx, source_id, 1, "manual")
            first, second, *_ = _starts_of(emu, source_id)
            gaps.append(second["ts"] - first["ts"])
            runs_per_trial.append(len(emu.runs(TENANT, source_id=source_id)))
    return Window(loss, sync_seconds, gaps, runs_per_trial)


# The read timeout of the `held` case: short, so the measurement is; the live default is 30 s.
HELD_READ_TIMEOUT = 1.0
# (how the answer is lost, run duration): runs as long as the soak's, then runs over before the re-ask.
CASES = [("drop", 5.0), ("drop", 0.0), ("held", 5.0), ("held", 0.5)]


async def main(trials: int) -> list[Window]:
    windows = []
    for loss, sync_seconds in CASES:
        with tempfile.TemporaryDirectory(prefix="splendor-window-") as tmp:
            config = EmulatorConfig(
                sync_seconds=sync_seconds,
                ingest_seconds=0.05,
                bucket_root=Path(tmp) / "buckets",
                list_runs_route=False,
            )
            with running_emulator(config) as emu:
                windows.append(await measure(emu, loss, sync_seconds, trials))
    return windows


def table(windows: list[Window]) -> str:
    head = [
        "| answer lost by | run duration | trials | commit → re-ask: median / p95 / max "
        "| trials with a second run |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + [w.row() for w in windows])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m soak.window", description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    print(table(asyncio.run(main(args.trials))))
    sys.exit(0)
