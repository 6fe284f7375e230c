"""The FastAPI application: routers, error handlers, the observing middleware and the background clock."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from splendor_emulator import (
    routes_connectors,
    routes_control,
    routes_identity,
    routes_ingest,
    routes_oauth,
    routes_objects,
    routes_sources,
)
from splendor_emulator.config import EmulatorConfig
from splendor_emulator.errors import install_error_handlers
from splendor_emulator.middleware import ObservingMiddleware
from splendor_emulator.runtime import Runtime

log = logging.getLogger("splendor_emulator")

TICK_SECONDS = 0.1

_API_MODULES = (routes_identity, routes_connectors, routes_sources, routes_ingest)
_TOOL_MODULES = (routes_oauth, routes_objects, routes_control)
# The routers' own routes carry the path templates the counters and fault specs are keyed by (the app's
# included-router wrappers do not expose them).
ROUTE_TABLE: list[BaseRoute] = [route for m in (*_API_MODULES, *_TOOL_MODULES) for route in m.router.routes]


def route_keys() -> frozenset[str]:
    """Every "METHOD /template" the emulator serves, in the counters' form."""
    return frozenset(
        f"{method} {getattr(route, 'path', '')}"
        for route in ROUTE_TABLE
        for method in getattr(route, "methods", None) or ()
    )


def check_route_switches(config: EmulatorConfig) -> None:
    """A switch naming no route would silently do nothing: refuse it, naming the key."""
    known = route_keys()
    named = [*config.routes_off, *(change.route for change in config.reshaped)]
    unknown = sorted({key for key in named if key not in known})
    if unknown:
        raise ValueError(f"routes_off/reshaped name routes the emulator does not serve: {', '.join(unknown)}")


DESCRIPTION = (
    "Local emulator of the Splendor admin API (connectors, sources, hosted uploads, ingest runs). "
    "Every request needs `Authorization: Bearer <token>`; tenant-scoped routes also need "
    "`X-Splendor-Tenant-Id` unless the token is a tenant API key."
)


class EmulatorApp(FastAPI):
    """A FastAPI app whose outermost layer is the observing middleware (outside even the error middleware)."""

    runtime: Runtime

    def build_middleware_stack(self) -> ASGIApp:
        return ObservingMiddleware(super().build_middleware_stack(), self.runtime, ROUTE_TABLE)


def create_app(runtime: Runtime) -> EmulatorApp:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def clock() -> None:
            while True:
                await asyncio.sleep(TICK_SECONDS)
                try:
                    await asyncio.to_thread(runtime.tick)
                except Exception:  # the clock must keep running; the next read settles the run anyway
                    log.exception("emulator clock tick failed")

        task = asyncio.create_task(clock())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = EmulatorApp(
        title="Splendor API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "Identity"},
            {"name": "Connectors & Airbyte"},
            {"name": "Sources & Ingest"},
        ],
    )
    check_route_switches(runtime.config)
    app.runtime = runtime
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (*_API_MODULES, *_TOOL_MODULES):
        app.include_router(module.router)
    return app
