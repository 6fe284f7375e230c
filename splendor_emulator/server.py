"""Running the emulator: in a background thread for tests (`running_emulator`) or in the foreground (CLI)."""

import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from splendor_emulator.app import create_app
from splendor_emulator.config import EmulatorConfig
from splendor_emulator.faults import FaultSpec
from splendor_emulator.runtime import Runtime
from splendor_emulator.store import Store

STARTUP_TIMEOUT_SECONDS = 15.0


def default_bucket_root(state_path: Path | None) -> Path | None:
    """With a state file, the buckets live beside it so a restart finds its landed files again."""
    return state_path.with_name(state_path.name + ".buckets") if state_path is not None else None


def build_runtime(
    config: EmulatorConfig | None, state_path: Path | str | None
) -> tuple[Runtime, Path | None]:
    """Returns the runtime and, when a throwaway bucket folder was made for it, that folder."""
    config = config or EmulatorConfig()
    state = Path(state_path) if state_path is not None else None
    scratch: Path | None = None
    bucket_root = config.bucket_root or default_bucket_root(state)
    if bucket_root is None:
        scratch = bucket_root = Path(tempfile.mkdtemp(prefix="splendor-emulator-"))
    config = config.model_copy(update={"bucket_root": bucket_root})
    return Runtime(config, Store(state)), scratch


class Emulator:
    """Handle on a running emulator: where it listens, where files land, and test hooks into its state."""

    def __init__(self, runtime: Runtime, base_url: str) -> None:
        self.runtime = runtime
        self.base_url = base_url

    @property
    def config(self) -> EmulatorConfig:
        return self.runtime.config

    @property
    def bucket_root(self) -> Path:
        return self.runtime.bucket_root

    # faults
    def add_fault(self, **spec: Any) -> int:
        return self.runtime.faults.add(FaultSpec.model_validate(spec)).fault_id

    def clear_faults(self) -> None:
        self.runtime.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return [f.model_dump(mode="json") for f in self.runtime.faults.list()]

    # observation
    def counts(self, route: str | None = None) -> dict[str, int]:
        return self.runtime.observer.counts(route)

    def count(self, route: str) -> int:
        """Requests served for one `"METHOD /template"` key (0 when never called)."""
        return self.runtime.observer.counts().get(route, 0)

    def mutations(self) -> list[dict[str, Any]]:
        return self.runtime.observer.mutations()

    def reset_counters(self) -> None:
        self.runtime.observer.reset()

    # state for invariant checks
    def state(self, tenant: str | None = None) -> dict[str, Any]:
        return self.runtime.snapshot(tenant)

    def sources(self, tenant: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.state(tenant)[tenant]["sources"]
        return result

    def runs(self, tenant: str, source_id: int | None = None) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.state(tenant)[tenant]["runs"]
        return [r for r in runs if source_id is None or r["source_id"] == source_id]

    def ingest_runs(self, tenant: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.state(tenant)[tenant]["ingest_runs"]
        return result

    def uploads(self, tenant: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.state(tenant)[tenant]["uploads"]
        return result


def _uvicorn_config(app: Any, log_level: str, **extra: Any) -> uvicorn.Config:
    # h11 is pinned so `drop_after` always finds the transport the same way; the access log is off because
    # hundreds of concurrent pipelines would drown everything else. Idle keep-alive connections are kept
    # longer than clients keep them (httpx: 5 s), so a client never reuses a connection the server is closing.
    return uvicorn.Config(
        app,
        http="h11",
        loop="asyncio",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        backlog=4096,
        timeout_keep_alive=65,
        **extra,
    )


@contextlib.contextmanager
def running_emulator(
    config: EmulatorConfig | None = None,
    state_path: Path | str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
) -> Iterator[Emulator]:
    """Start the emulator on a free loopback port in a background thread; stop it on exit."""
    runtime, scratch = build_runtime(config, state_path)
    # IPPROTO_TCP must be explicit: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and without
    # it every response pays a 40 ms Nagle/delayed-ACK stall.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(create_app(runtime), log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="splendor-emulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            runtime.store.close()
            raise RuntimeError("the Splendor emulator did not start")
        time.sleep(0.01)
    try:
        yield Emulator(runtime, f"http://{host}:{bound_port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        runtime.store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_emulator_async(
    config: EmulatorConfig | None = None, state_path: Path | str | None = None, **kwargs: Any
) -> AsyncIterator[Emulator]:
    """The same server, started and stopped without blocking the caller's event loop."""
    manager = running_emulator(config, state_path, **kwargs)
    emulator = await asyncio.to_thread(manager.__enter__)
    try:
        yield emulator
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def serve(
    config: EmulatorConfig, state_path: Path | None, host: str, port: int, log_level: str = "info"
) -> None:
    """Run in the foreground until interrupted (the CLI)."""
    runtime, scratch = build_runtime(config, state_path)
    try:
        uvicorn.Server(_uvicorn_config(create_app(runtime), log_level, host=host, port=port)).run()
    finally:
        runtime.store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
