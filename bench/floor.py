"""The floor: the same API work as the flows, by a bare asyncio + httpx script (no Prefect, no checkpoints).

It polls on the same schedule as the flows (`PollPlan` / `next_delay`) so the difference between
the two is what orchestration costs, not a different polling policy.
"""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from splendor_api import ROUTES, TENANT_HEADER
from splendor_api.client import KEEPALIVE_CONNECTIONS
from splendor_flows.engine.polling import Expectation, PollOptions, PollPlan, next_delay

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class FloorRun:
    source_key: str
    refresh_calls: int = 0
    detected_at: float = 0.0
    completed_at: float = 0.0
    status: str = ""


@dataclass
class Api:
    """Raw HTTP with the same headers as the client, a request bound and Retry-After honoured."""

    base_url: str
    tenant: str
    token: str
    concurrency: int
    http: httpx.AsyncClient = field(init=False)
    slots: asyncio.Semaphore = field(init=False)
    paused_until: float = 0.0

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}", TENANT_HEADER: self.tenant},
            # The client's pool limits: what differs from the fleet is then the orchestration only.
            limits=httpx.Limits(
                max_connections=self.concurrency,
                max_keepalive_connections=min(KEEPALIVE_CONNECTIONS, self.concurrency),
            ),
            timeout=30,
        )
        self.slots = asyncio.Semaphore(self.concurrency)

    async def call(self, route: str, body: Any = None, **params: Any) -> Any:
        spec = ROUTES[route]
        while True:
            async with self.slots:
                if (wait := self.paused_until - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                response = await self.http.request(spec.method, spec.path(**params), json=body)
            if response.status_code in (429, 503):
                self.paused_until = time.monotonic() + float(response.headers.get("Retry-After", "1"))
                continue
            response.raise_for_status()
            data = response.json()
            return data[spec.envelope] if spec.envelope else data


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else 0.0


def _age(run: dict[str, Any]) -> float:
    return max(0.0, datetime.now(UTC).timestamp() - _ts(run["created_at"]))


async def sync_one(
    api: Api, source_key: str, source_id: int, poll: PollOptions, expectation: Expectation | None
) -> FloorRun:
    result = FloorRun(source_key)
    run = await api.call("start_sync", {"trigger": "scheduled"}, source_id=source_id)
    plan = PollPlan(poll, expectation)
    while run["status"] not in TERMINAL:
        await asyncio.sleep(plan.delay(_age(run)))
        run = await api.call("refresh_run", run_id=run["run_id"])
        result.refresh_calls += 1
        plan.observe(run["status"])
    result.detected_at = time.time()
    result.completed_at = _ts(run["completed_at"])
    result.status = run["status"]
    await api.call("enqueue_ingest", {"run_id": run["run_id"]}, source_id=source_id)
    return result


async def floor_fleet(
    api: Api, keys: list[str], poll: PollOptions, expectations: dict[str, Expectation | None]
) -> list[FloorRun]:
    await api.call("me")
    ids = {s["source_key"]: s["source_id"] for s in await api.call("list_sources")}
    return list(await asyncio.gather(*(sync_one(api, k, ids[k], poll, expectations.get(k)) for k in keys)))


async def floor_pipeline(api: Api, spec: Any, credentials: dict[str, Any], poll: PollOptions) -> str:
    """connect_source's calls in a straight line: discover, create, provision, connect, sync, poll, ingest."""
    await api.call("me")
    await api.call("list_providers")
    await api.call("discover_provider", provider_key=spec.provider_key)
    await api.call("list_sources")
    created = await api.call(
        "create_airbyte_source",
        {
            "provider_key": spec.provider_key,
            "connector_key": spec.provider_key,
            "connector_name": spec.provider_key,
            "source_key": spec.source_key,
            "source_name": spec.source_key,
            "dataset_id": spec.dataset_id,
            "bucket": spec.bucket,
            "iam_role_arn": spec.iam_role_arn,
            "streams": spec.streams,
            "schedule_type": "manual",
        },
    )
    source_id = created["source"]["source_id"]
    await api.call("provision", {"source_configuration": credentials}, source_id=source_id)
    await api.call("create_connection", {"streams": spec.streams}, source_id=source_id)
    run = await api.call("start_sync", {"trigger": "manual"}, source_id=source_id)
    polls, began = 0, time.monotonic()
    while True:
        run = await api.call("refresh_run", run_id=run["run_id"])
        polls += 1
        if run["status"] in TERMINAL:
            break
        await asyncio.sleep(next_delay(poll, polls, _age(run)))
    ingest = await api.call("enqueue_ingest", {"run_id": run["run_id"]}, source_id=source_id)
    pending = {r["ingest_run_id"] for r in ingest}
    polls, began = 0, time.monotonic()
    while pending:
        for ingest_id in sorted(pending):
            item = await api.call("get_ingest_run", ingest_run_id=ingest_id)
            if item["status"] in ("ready", "failed", "aborted", "deleted", "superseded"):
                pending.discard(ingest_id)
        polls += 1
        if pending:
            await asyncio.sleep(next_delay(poll, polls, time.monotonic() - began))
    return str(run["status"])
