"""A real HTTP proxy in front of a Prefect server that can answer 503 for a while, as the server does.

A SQLite-backed Prefect server answers `503` with `{"exception_message": "Service Unavailable"}` and no
`Retry-After` while its database is locked by another writer; during an outage this proxy answers every
HTTP request exactly so, without passing it on (the server never sees it, as when the server rolled
it back). Websockets (Prefect's event stream) pass through untouched: a locked database does not drop
them. Outside an outage every request is forwarded as is.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import connect as ws_connect

HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"content-length"}
UNAVAILABLE = json.dumps({"exception_message": "Service Unavailable"}).encode()


@dataclass
class Outage:
    """When the proxy refuses, and what it refused (monotonic seconds, method, path)."""

    until: float = 0.0
    # (method, path) of the only request refused, or None for all of them.
    only: tuple[str, str] | None = None
    refused: list[tuple[float, str, str]] = field(default_factory=list)
    forwarded: list[tuple[float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # With `from_first_request`, the outage's length, counted from the first request it refuses: a client
    # slow to start (a CLI on a loaded machine) still meets the whole outage.
    pending: float | None = None

    def start(
        self, seconds: float, only: tuple[str, str] | None = None, from_first_request: bool = False
    ) -> None:
        with self.lock:
            self.until = float("inf") if from_first_request else time.monotonic() + seconds
            self.pending = seconds if from_first_request else None
            self.only = only

    def active(self, method: str, path: str) -> bool:
        if self.only not in (None, (method, path)):
            return False
        with self.lock:
            if self.pending is not None:
                self.until, self.pending = time.monotonic() + self.pending, None
        return time.monotonic() < self.until

    def note(self, refused: bool, method: str, path: str) -> None:
        with self.lock:
            (self.refused if refused else self.forwarded).append((time.monotonic(), method, path))


class PrefectProxy:
    """`http://127.0.0.1:<port>/api` forwarding to `upstream_api` (a Prefect API URL)."""

    def __init__(self, upstream_api: str) -> None:
        self.upstream = httpx.URL(upstream_api)
        self.origin = f"{self.upstream.scheme}://{self.upstream.host}:{self.upstream.port}"
        self.outage = Outage()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", lifespan="off", ws="websockets-sansio", interface="asgi3"
            )
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.client: httpx.AsyncClient | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.upstream.path}"

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        if self.outage.active(method, path):
            self.outage.note(True, method, path)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(UNAVAILABLE)).encode()),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": UNAVAILABLE})
            return
        self.outage.note(False, method, path)
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=60)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP | {b"accept-encoding"}]
        query = scope["query_string"].decode()
        response = await self.client.request(
            method, f"{self.origin}{path}" + (f"?{query}" if query else ""), headers=headers, content=body
        )
        content = response.content
        out = [
            (k.encode(), v.encode())
            for k, v in response.headers.multi_items()
            if k.encode().lower() not in HOP_BY_HOP | {b"content-encoding"}
        ]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        query = scope["query_string"].decode()
        url = f"ws://{self.upstream.host}:{self.upstream.port}{scope['path']}" + (
            f"?{query}" if query else ""
        )
        try:
            upstream = await ws_connect(url)
        except OSError:
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept"})

        async def downstream_to_upstream() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                await upstream.send(message.get("text") or message.get("bytes") or "")

        async def upstream_to_downstream() -> None:
            async for data in upstream:
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1000})

        tasks = [asyncio.create_task(downstream_to_upstream()), asyncio.create_task(upstream_to_downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()

    def refused_span(self) -> float:
        """Seconds from the first refused request to the last one."""
        times = [t for t, _, _ in self.outage.refused]
        return max(times) - min(times) if times else 0.0


@contextlib.contextmanager
def running_proxy(upstream_api: str) -> Iterator[PrefectProxy]:
    proxy = PrefectProxy(upstream_api)
    proxy.thread.start()
    deadline = time.monotonic() + 30
    while not proxy.server.started:
        if time.monotonic() > deadline or not proxy.thread.is_alive():
            raise RuntimeError("the Prefect proxy did not start")
        time.sleep(0.05)
    try:
        yield proxy
    finally:
        proxy.server.should_exit = True
        proxy.thread.join(timeout=10)
