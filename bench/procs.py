"""The processes a benchmark needs: the emulator and a Prefect server, each in its own process.

Separate processes so the CPU time we attribute to orchestration is the flow process's own (plus
the Prefect server's, read from /proc), not the emulator's.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _tree(root: int) -> list[int]:
    """The process and its live descendants (`prefect server start` runs uvicorn as a child)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
    found = [root]
    for pid in found:
        found.extend(child for child, parent in parents.items() if parent == pid)
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process tree (live descendants and reaped children), from /proc."""
    total = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            total += sum(int(x) for x in _stat(pid)[11:15])
    return total / TICKS


def peak_rss_mb(root: int) -> float:
    """Sum of the peak resident sizes of a process tree."""
    total = 0.0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become healthy within {timeout:.0f} s")


class EmulatorProcess:
    def __init__(self, base_url: str, proc: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.proc = proc
        self._http = httpx.Client(base_url=base_url, timeout=30)

    def counts(self) -> dict[str, int]:
        data: dict[str, int] = self._http.get("/_emulator/counts").json()
        return data

    def reset_counters(self) -> None:
        self._http.post("/_emulator/reset-counters")

    def add_fault(self, **spec: Any) -> None:
        self._http.post("/_emulator/faults", json=spec).raise_for_status()

    def clear_faults(self) -> None:
        self._http.delete("/_emulator/faults")

    def runs(self, tenant: str = "acme") -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self._http.get("/_emulator/state", params={"tenant": tenant}).json()[
            tenant
        ]["runs"]
        return runs


@contextlib.contextmanager
def emulator_process(config: dict[str, Any], workdir: Path) -> Iterator[EmulatorProcess]:
    port = free_port()
    config_file = workdir / f"emulator-{port}.json"
    config_file.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "splendor_emulator",
            "--port",
            str(port),
            "--config",
            str(config_file),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/_emulator/health", proc, 60, "the emulator")
        yield EmulatorProcess(base, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`prefect server start` on a free port with its database under `home` (a temp dir)."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api = f"http://127.0.0.1:{port}/api"
        _wait_healthy(f"{api}/health", proc, 120, "the Prefect server")
        yield api, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
