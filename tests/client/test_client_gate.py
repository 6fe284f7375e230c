"""The RateGate makes every client that shares it pause on a Retry-After, and bounds in-flight requests."""

import asyncio
import time

import httpx
from clientkit import ClientFactory, FakeClock, Recorder, fixture

from splendor_api import RateGate

SOURCES = fixture("list_sources_response.json")


async def test_retry_after_seen_by_one_client_delays_another(make_client: ClientFactory) -> None:
    gate = RateGate()
    shed = asyncio.Event()
    shed_at = 0.0
    b_sent_at = 0.0
    a_calls = 0

    async def api_a(request: httpx.Request) -> httpx.Response:
        nonlocal shed_at, a_calls
        a_calls += 1
        if a_calls == 1:
            shed_at = time.monotonic()
            shed.set()
            return httpx.Response(503, headers={"Retry-After": "0.5"})
        return httpx.Response(200, json=SOURCES)

    async def api_b(request: httpx.Request) -> httpx.Response:
        nonlocal b_sent_at
        b_sent_at = time.monotonic()
        return httpx.Response(200, json=SOURCES)

    client_a = make_client(api_a, gate=gate, real_time=True)
    client_b = make_client(api_b, gate=gate, real_time=True)

    async def b_after_the_503() -> None:
        await shed.wait()
        await client_b.list_sources()

    await asyncio.gather(client_a.list_sources(), b_after_the_503())
    assert b_sent_at - shed_at >= 0.45
    assert a_calls == 2


async def test_clients_without_a_shared_gate_do_not_wait_for_each_other(make_client: ClientFactory) -> None:
    shed = asyncio.Event()
    first = True

    async def api_a(request: httpx.Request) -> httpx.Response:
        nonlocal first
        if first:
            first = False
            shed.set()
            # Long against the bound below, so a loaded machine's slowness cannot pass for a shared wait.
            return httpx.Response(503, headers={"Retry-After": "2"})
        return httpx.Response(200, json=SOURCES)

    client_a = make_client(api_a, real_time=True)
    client_b = make_client(Recorder(httpx.Response(200, json=SOURCES)), real_time=True)

    async def b_after_the_503() -> float:
        await shed.wait()
        started = time.monotonic()
        await client_b.list_sources()
        return time.monotonic() - started

    _, b_took = await asyncio.gather(client_a.list_sources(), b_after_the_503())
    assert b_took < 1.0


async def test_gate_bounds_requests_in_flight(make_client: ClientFactory) -> None:
    gate = RateGate(max_concurrency=2)
    release = asyncio.Event()
    in_flight = 0
    peak = 0

    async def slow_api(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json=SOURCES)

    clients = [make_client(slow_api, gate=gate) for _ in range(3)]
    calls = [asyncio.create_task(c.list_sources()) for c in clients for _ in range(2)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert peak == 2
    assert gate.in_flight == 2
    release.set()
    await asyncio.gather(*calls)
    assert peak == 2
    assert gate.in_flight == 0


async def test_object_store_503_does_not_close_the_api_gate(make_client: ClientFactory) -> None:
    gate = RateGate()
    api = Recorder(
        httpx.Response(503, headers={"Retry-After": "30"}), httpx.Response(200, headers={"ETag": '"e1"'})
    )
    etag = await make_client(api, gate=gate).put_object("https://bucket.test/k?X-Amz-Signature=s", b"x", {})
    assert etag == '"e1"'
    assert gate.closed_for() == 0.0


async def test_gate_keeps_the_later_reopening_moment() -> None:
    clock = FakeClock()
    gate = RateGate(clock=clock, sleep=clock.sleep)
    gate.close_for(10)
    gate.close_for(3)
    assert gate.closed_for() == 10
    await gate.wait_open()
    assert clock.sleeps == [10]
    assert gate.closed_for() == 0
    assert "max_concurrency=32" in repr(gate)
