"""End-to-end fixtures: a real `prefect server start` (SQLite, its own PREFECT_HOME), the emulator, and
a process worker on the `splendor-local` pool, all on loopback.

Everything is package-scoped so it starts once for tests/e2e and is torn down before other suites
run. Every subprocess gets its own process group and is killed at teardown, even when a test fails.
Logs of the server and the worker land in the package's temp dir and are printed when startup fails.
"""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from splendor_emulator import Emulator, EmulatorConfig, running_emulator
from tests.prefect_db import seed_home

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
TOKEN = "acme-admin-token"
STARTUP_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        # SIGINT first: a process worker ignores SIGTERM for a while (prefect3-notes §5.2).
        for sig, wait in ((signal.SIGINT, 8.0), (signal.SIGTERM, 4.0), (signal.SIGKILL, 4.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


class Processes:
    """Starts subprocesses in their own process groups and stops all of them, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO) -> Proc:
        log = self.log_dir / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def clean_env() -> dict[str, str]:
    # Nothing from the developer's Prefect profile or another suite's harness may leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SPLENDOR_"))}


@dataclass
class Stack:
    api_url: str
    home: Path
    env: dict[str, str]
    emulator: Emulator
    procs: Processes

    def run(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. the prefect CLI) with the stack's environment, from the checkout."""
        result = subprocess.run(
            list(args), env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


def wait_healthy(api_url: str, proc: Proc, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"prefect server exited {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy after {timeout:.0f} s:\n{proc.tail()}")


@contextlib.contextmanager
def running_stack(base: Path, *, ui: bool = False) -> Iterator[Stack]:
    """The emulator and a `prefect server start` with its own PREFECT_HOME under `base`.

    `ui=True` serves the Prefect UI too (the browser tests); the e2e tests leave it off, since copying
    and serving its static bundles only costs start-up time there.
    """
    home = base / "prefect-home"
    seed_home(home)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    procs = Processes(base)
    config = EmulatorConfig(
        sync_seconds=2.0,
        ingest_seconds=0.05,
        bucket_root=base / "buckets",
        # Small thresholds so a few hundred KiB exercise multipart uploads.
        upload_single_max_bytes=64 * 1024,
        upload_part_size_bytes=64 * 1024,
    )
    with running_emulator(config) as emu:
        env = clean_env() | {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            # Poll fast: the defaults (10 s) would dominate every test.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            # A run that waits for a deployment slot retries after 1 s instead of 30 s.
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            "SPLENDOR_API_BASE": emu.base_url,
            "SPLENDOR_TENANT_ID": "acme",
            "SPLENDOR_TOKEN": TOKEN,
            "SPLENDOR_MAX_ATTEMPTS": "3",
            "SPLENDOR_MAX_RETRY_SECONDS": "3",
        }
        if ui:
            # No upgrade banners in the UI (and in the browser tests' screenshots).
            env["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] = "false"
        try:
            server = procs.start(
                "server", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env
            )
            wait_healthy(api_url, server)
            yield Stack(api_url=api_url, home=home, env=env, emulator=emu, procs=procs)
        finally:
            procs.stop_all()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e")) as started:
        yield started


UPLOAD_TRIGGER = "splendor-upload-completed"


def apply_upload_trigger(stack: Stack) -> None:
    """The automation that starts after-upload runs, applied as `splendor-flows automations apply` does."""
    from splendor_flows.orchestration import automations

    automations.apply(stack.api_url, [a for a in automations.load() if a["name"] == UPLOAD_TRIGGER])


@pytest.fixture(scope="package")
def deployed(stack: Stack) -> Stack:
    """The pool exists, `prefect deploy --all` has run once and the upload trigger is applied (what
    `make deploy` does, but for the safety automations: zombie detection and the resume of crashed runs
    act on every run of the server, and the tests sharing it stop workers and fail runs on purpose;
    test_e2e_7_automations_apply applies all of them on a server of its own)."""
    stack.run(PREFECT, "work-pool", "create", "splendor-local", "--type", "process", "--overwrite")
    stack.run(PREFECT, "--no-prompt", "deploy", "--all", timeout=120)
    apply_upload_trigger(stack)
    return stack


def start_worker(stack: Stack, name: str = "worker") -> Proc:
    """A process worker on the `splendor-local` pool, once it says it started."""
    proc = stack.procs.start(
        name, [PREFECT, "worker", "start", "--pool", "splendor-local", "--limit", "4"], stack.env
    )
    deadline = time.monotonic() + 60
    while "started" not in proc.tail() and time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"worker exited:\n{proc.tail()}")
        time.sleep(0.3)
    return proc


@pytest.fixture(scope="package")
def worker(deployed: Stack) -> Iterator[Proc]:
    proc = start_worker(deployed)
    yield proc
    proc.stop()


@pytest.fixture
def live_worker(deployed: Stack, worker: Proc) -> Iterator[Proc]:
    """The package's worker, or a new one when an earlier test stopped it (test_e2e_3_serve does)."""
    if worker.popen.poll() is None:
        yield worker
        return
    proc = start_worker(deployed, f"worker-{time.monotonic_ns()}")
    yield proc
    proc.stop()


# --- helpers used by the tests ---------------------------------------------------------------------------


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    # A SQLite-backed Prefect server answers 503 + Retry-After while its database is locked (the
    # request was rolled back); Prefect's own client retries those, so do the same here.
    deadline = time.monotonic() + 60
    while True:
        response = httpx.request(method, f"{stack.api_url}{path}", timeout=30, **kwargs)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(float(response.headers.get("Retry-After", "1") or 1))
    response.raise_for_status()
    return response.json() if response.content else None


def deployment_id(stack: Stack, name: str) -> str:
    return str(api(stack, "GET", f"/deployments/name/{name}/{name}")["id"])


def flow_runs(stack: Stack, deployment: str) -> list[dict[str, Any]]:
    body = {
        "deployments": {"id": {"any_": [deployment_id(stack, deployment)]}},
        "sort": "EXPECTED_START_TIME_ASC",
    }
    runs: list[dict[str, Any]] = api(stack, "POST", "/flow_runs/filter", json=body)
    return runs


def wait_for_runs(
    stack: Stack, deployment: str, predicate: Any, count: int = 1, timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Wait until `count` runs of the deployment that satisfy `predicate` are all in a final state."""
    deadline = time.monotonic() + timeout
    matching: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        matching = [r for r in flow_runs(stack, deployment) if predicate(r)]
        if len(matching) >= count and all(r["state"]["type"] in FINAL for r in matching):
            return matching
        time.sleep(0.5)
    states = [(r["name"], r["state"]["type"], r["state"]["name"]) for r in matching]
    raise AssertionError(f"{deployment}: runs not final after {timeout:.0f} s: {states}")


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
