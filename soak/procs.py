"""The soak's long-lived processes: a throwaway Prefect server and the emulator (restartable).

Both run as real subprocesses so that killing one is a real crash: the emulator loses its in-memory
faults, counters and in-flight requests, and keeps only what its `--state` file committed.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - began
        time.sleep(0.1)
    raise RuntimeError(f"{what} not healthy after {timeout:.0f} s")


def prefect_env(home: Path, results: Path, api_url: str | None = None) -> dict[str, str]:
    """Settings every soak process shares: isolated home, shared result storage, no phone-home.

    The flow heartbeat cannot be switched off from the environment (None is not parseable there), so
    the worker turns it off with `temporary_settings`.
    """
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(results),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextlib.contextmanager
def prefect_server(home: Path, results: Path, log: Path) -> Iterator[tuple[str, float]]:
    """`prefect server start` on a free port; yields (api_url, seconds to healthy)."""
    port = free_port()
    env = {**os.environ, **prefect_env(home, results)}
    env.pop("PREFECT_API_URL", None)
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        api = f"http://127.0.0.1:{port}/api"
        startup = wait_healthy(f"{api}/health", proc, 120, "prefect server")
        yield api, startup
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process we started (its whole session: `prefect server` runs uvicorn as a child)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


class EmulatorProcess:
    """`python -m splendor_emulator --state FILE` on a fixed port, restartable with SIGKILL."""

    def __init__(
        self, workdir: Path, sync_seconds: float, ingest_seconds: float, config: Path | None
    ) -> None:
        self.port = free_port()
        self.state = workdir / "emulator.sqlite"
        self.log = workdir / "emulator.log"
        self.args = [
            sys.executable,
            "-m",
            "splendor_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--state",
            str(self.state),
            "--sync-seconds",
            str(sync_seconds),
            "--ingest-seconds",
            str(ingest_seconds),
            "--log-level",
            "warning",
        ]
        if config is not None:
            self.args += ["--config", str(config)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.startup_seconds: list[float] = []
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                self.args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.startup_seconds.append(
            wait_healthy(f"{self.base_url}/_emulator/health", self.proc, 30, "emulator")
        )

    def crash_and_restart(self) -> None:
        assert self.proc is not None
        stop(self.proc, signal.SIGKILL)
        self.restarts += 1
        self.start()

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        self.http.close()

    # control endpoints (loopback, no auth)
    def faults(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.http.get("/_emulator/faults").json()["faults"]
        return found

    def add_fault(self, spec: dict[str, Any]) -> int:
        response = self.http.post("/_emulator/faults", json=spec)
        response.raise_for_status()
        fault_id: int = response.json()["fault_id"]
        return fault_id

    def state_snapshot(self, tenant: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/_emulator/state", params={"tenant": tenant}).json()[tenant]
        return data

    def mutations(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.http.get("/_emulator/mutations").json()["mutations"]
        return found


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path
