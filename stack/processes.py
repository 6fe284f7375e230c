"""Child processes of the stack: each in its own session, logged to a file, stopped newest first.

A terminal's Ctrl-C goes to the foreground process group only. Starting every child in its own session
means the children never see it: the stack decides the order and the signals (workers before the server,
PostgreSQL last, with a fast shutdown), instead of everything dying at once mid-write.
"""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# (signal, seconds to wait for exit, whole process group?) tried in order until the process is gone.
StopPlan = Sequence[tuple[signal.Signals, float, bool]]

# SIGINT first: a Prefect process worker ignores SIGTERM for a while, and SIGINT makes `prefect server`
# and uvicorn shut down cleanly.
DEFAULT_STOP: StopPlan = (
    (signal.SIGINT, 10.0, True),
    (signal.SIGTERM, 5.0, True),
    (signal.SIGKILL, 5.0, True),
)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot): with the pid, a process's identity."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of `pid` as (pid, start time), children before grandchildren.

    Prefect's process worker starts each flow run in a session of its own, so a signal to the worker's
    process group does not reach the flow runs: they have to be found through their parent links.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = parent_of(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[tuple[int, int]] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            started = start_time(child)
            if started is not None:
                found.append((child, started))
                queue.append(child)
    return found


def ignores(pid: int, sig: signal.Signals) -> bool:
    """Whether `pid` ignores `sig` (from /proc: a child inherits SIG_IGN, e.g. SIGINT from a parent that
    was started in the background by a non-interactive shell)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def is_ancestor(ancestor: int, pid: int) -> bool:
    current: int | None = pid
    while current is not None and current > 1:
        if current == ancestor:
            return True
        current = parent_of(current)
    return False


def _kill_exact(processes: Sequence[tuple[int, int]], sig: signal.Signals) -> None:
    for pid, started in processes:
        # The start time guards against a pid that was reused since it was recorded.
        if start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


@dataclass
class Proc:
    name: str
    popen: "subprocess.Popen[bytes]"
    log: Path
    stop_plan: StopPlan = DEFAULT_STOP
    home: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process, its group, and any descendant that left the group (flow runs)."""
        strays = descendants(self.pid) if self.alive() else []
        for sig, wait, group in self.stop_plan:
            if not self.alive():
                break
            if ignores(self.pid, sig):
                continue  # waiting for it would only add the full timeout to every stop
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        self._reap_strays(strays)

    def kill_tree(self) -> None:
        """SIGKILL the process and every descendant at once: what losing the machine looks like."""
        strays = descendants(self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _kill_exact(strays, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    @staticmethod
    def _reap_strays(strays: Sequence[tuple[int, int]]) -> None:
        if not strays:
            return
        _kill_exact(strays, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(start_time(p) == s for p, s in strays):
            time.sleep(0.1)
        _kill_exact(strays, signal.SIGKILL)


@dataclass
class Processes:
    """Starts children in their own sessions and stops all of them, newest first."""

    log_dir: Path
    started: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        *,
        stop_plan: StopPlan = DEFAULT_STOP,
        user: str | None = None,
        home: Path | None = None,
        replacing: Proc | None = None,
    ) -> Proc:
        """Start a child; `replacing` (stopped first by the caller) hands over its place in the stop order,
        so a restarted server is still stopped after the workers and PostgreSQL still last."""
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                list(args),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Dropping to another user (PostgreSQL refuses root) also drops root's groups.
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        proc = Proc(name, popen, log, stop_plan, home)
        if replacing is not None and replacing in self.started:
            self.started[self.started.index(replacing)] = proc
        else:
            self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
