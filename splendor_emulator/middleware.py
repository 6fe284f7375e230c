"""The outermost ASGI layer: counts every request per route template, logs mutations, adds latency and
applies HTTP faults. It sits outside FastAPI's own middleware so it sees uvicorn's `send` and can drop a
connection."""

import asyncio
import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from splendor_emulator.auth import tenant_hint
from splendor_emulator.faults import FaultSpec
from splendor_emulator.reshape import ShapeChange
from splendor_emulator.routes_control import CONTROL_PREFIX, COUNTED_CONTROL_PREFIX
from splendor_emulator.runtime import Runtime

UNMATCHED = "(unmatched)"
_SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


def match_route(routes: list[BaseRoute], scope: Scope) -> tuple[str, dict[str, Any]]:
    """The route template a request will be served by (or the one whose method it missed)."""
    partial: tuple[str, dict[str, Any]] | None = None
    for route in routes:
        found, child = route.matches(scope)
        template = getattr(route, "path", UNMATCHED)
        params = dict(child.get("path_params", {}))
        if found == Match.FULL:
            return template, params
        if found == Match.PARTIAL and partial is None:
            partial = (template, params)
    return partial or (UNMATCHED, {})


def _retry_after(spec: FaultSpec) -> str:
    if spec.retry_after == "http-date":
        return email.utils.formatdate(time.time() + spec.retry_after_seconds, usegmt=True)
    return spec.retry_after or "1"


def _fault_response(spec: FaultSpec) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    if spec.kind == "unavailable":
        detail = {
            "code": "service_unavailable",
            "message": "Backend temporarily unavailable; retry after a pause.",
        }
        return 503, {"detail": detail}, [(b"retry-after", _retry_after(spec).encode())]
    if spec.kind == "bad_gateway":
        detail = {"code": "upstream_request_failed", "message": "An upstream provider request failed."}
        return 502, {"detail": detail}, []
    return 500, {"detail": "Internal Server Error"}, []


def _echoing(body: dict[str, Any], request: str) -> dict[str, Any]:
    """The error body with the refused request quoted in its detail (`echo_request`)."""
    detail = body["detail"]
    if isinstance(detail, dict):
        return {"detail": {**detail, "message": f"{detail['message']} Request was: {request}"}}
    return {"detail": f"{detail}. Request was: {request}"}


async def _request_text(method: str, path: str, headers: dict[str, str], receive: Receive) -> str:
    whole = await _buffered(receive)  # its first message holds the whole body
    text = (await whole()).get("body", b"").decode("utf-8", "replace")
    return f"{method} {path} Authorization: {headers.get('authorization', '')} {text}".strip()


async def _send_json(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": payload})


def _reshaping(send: Send, changes: list[ShapeChange]) -> Send:
    """A `send` that holds a successful JSON answer back until it is whole, makes the shape changes,
    then sends it with its new length. Errors and non-JSON answers pass through unchanged."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def reshape_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        payload = b"".join(chunks)
        try:
            body = json.loads(payload)
        except ValueError:
            pass
        else:
            for change in changes:
                body = change.apply(body)
            payload = json.dumps(body).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return reshape_send


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now, so a slow (hanging) server still processes the request after the
    client has given up waiting: the effect happens, the client just never hears about it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay


class ObservingMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime, routes: list[BaseRoute]) -> None:
        self.app = app
        self.runtime = runtime
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or (
            path.startswith(CONTROL_PREFIX) and not path.startswith(COUNTED_CONTROL_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        rt = self.runtime
        method: str = scope["method"]
        template, params = match_route(self.routes, scope)
        route_key = f"{method} {template}"
        rt.observer.count(route_key)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        tenant = tenant_hint(headers)
        if rt.config.latency_ms > 0:
            await asyncio.sleep(rt.config.latency_ms / 1000)

        fault = None if rt.config.route_is_off(route_key) else rt.faults.take_http(route_key, tenant)
        fault_kind = fault.kind if fault else None

        def log_mutation(status: int | None, dropped: bool = False) -> None:
            # Logged before the response leaves, so a client that has its answer also finds it in the log.
            if method not in _SAFE_METHODS:
                rt.observer.record_mutation(
                    tenant=tenant,
                    method=method,
                    route=template,
                    path=path,
                    path_params=params,
                    status=status,
                    fault=fault_kind,
                    dropped=dropped,
                )

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                log_mutation(message["status"])
            await send(message)

        if rt.config.route_is_off(route_key):
            # Answered the way a router without the path answers, before any handler: nothing happens.
            log_mutation(404)
            await _send_json(send, 404, {"detail": "Not Found"}, [])
        elif fault is not None and fault.kind in ("unavailable", "bad_gateway", "server_error"):
            # Rejected before the handler runs: the call has no effect, which is what makes it safe to retry.
            code, body, extra = _fault_response(fault)
            if fault.echo_request:
                body = _echoing(body, await _request_text(method, path, headers, receive))
            log_mutation(code)
            await _send_json(send, code, body, extra)
        elif fault is not None and fault.kind == "drop_after":
            await self._drop_after(scope, receive, send, log_mutation)
        else:
            if fault is not None:  # latency or hang: take the request, wait, then serve it normally
                receive = await _buffered(receive)
                await asyncio.sleep(fault.seconds)
            changes = rt.config.shape_changes(route_key)
            await self.app(scope, receive, _reshaping(capture, changes) if changes else capture)

    async def _drop_after(
        self, scope: Scope, receive: Receive, send: Send, log_mutation: Callable[[int | None, bool], None]
    ) -> None:
        """Serve the request fully (its effect is committed), then close the TCP connection without a byte of
        response: the client cannot tell whether the call happened."""
        status: int | None = None

        async def swallow(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, swallow)
        log_mutation(status, True)
        # uvicorn hands the app a bound method of its per-request cycle, which holds the connection's
        # transport.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("drop_after needs the uvicorn server to reach the connection")
        transport.abort()
        # Let uvicorn process connection_lost, so it does not try to answer a request on a closed socket.
        for _ in range(5):
            await asyncio.sleep(0)
