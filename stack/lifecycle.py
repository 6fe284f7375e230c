"""The production-shaped stack on one machine (`make stack`): start it, print where everything is, stop it.

PostgreSQL, a Prefect server on it, the Splendor emulator, the deployments, the automations and N process
workers that stand for separate machines.

Each worker has its own PREFECT_HOME (nothing shared through the home directory, as on separate machines)
and all of them share one result-storage directory, standing for the network filesystem or bucket that
lets any worker resume another worker's run from its checkpoints.

The Prefect server requires credentials (its basic auth string, random per stack, kept in `api-auth` under
the root, mode 0600): without them any local user could read the Secret blocks that hold connector
credentials. The workers, the deploy and every CLI the stack runs get it as PREFECT_API_AUTH_STRING.

    with Stack(StackConfig(root=Path("var/stack"))) as stack:
        print(stack.summary())

What tests do to a running stack (outages, runs, schedules, SQL) is tests/stack_harness.py's.
"""

import base64
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from splendor_flows.orchestration import automations
from stack import postgres
from stack.processes import Proc, Processes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
POOL = "splendor-local"
# Calls to Splendor in flight at once per tenant, across every worker: the global concurrency limit
# `splendor-api-<tenant>` that the fleet (and each of its shards) takes its slots from.
DEFAULT_API_LIMIT = 50
# Long unix socket paths do not fit in sockaddr_un (107 bytes on Linux).
MAX_SOCKET_PATH = 100
# The server's basic-auth string ("user:password"), under the stack's root.
AUTH_FILE = "api-auth"
AUTH_USER = "splendor"

log = logging.getLogger("stack")


LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves bind: a port left in TIME_WAIT by the last run is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def clean_env() -> dict[str, str]:
    # Nothing from the caller's Prefect profile, a test harness or a real Splendor token may leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SPLENDOR_"))}


@dataclass
class StackConfig:
    root: Path = REPO / "var" / "stack"
    workers: int = 2
    # 0 picks a free port. The PostgreSQL port only names the socket file unless `pg_tcp` is set.
    server_port: int = 4200
    emulator_port: int = 8765
    pg_port: int = 5432
    pg_tcp: bool = False
    # False: fsync off (throw-away clusters in tests); never for data you want to keep.
    durable: bool = True
    ui: bool = True
    worker_limit: int = 4
    worker_poll_seconds: float = 10.0
    # Flow-run heartbeats (Prefect's minimum is 30 s): what zombie detection listens to.
    heartbeat_seconds: int = 30
    # None keeps the window of deployments/automations.yaml.
    zombie_within_seconds: float | None = None
    # Where the notification automations post (orchestration/automations.py); None: $SPLENDOR_NOTIFY_URL or an
    # existing splendor-notify block, else those automations are skipped.
    notify_url: str | None = None
    emulator_args: tuple[str, ...] = ()
    # Extra variables for the server and the workers (e.g. shorter slot waits in tests).
    extra_env: dict[str, str] = field(default_factory=dict)
    tenant: str = "acme"
    # The tenant's `splendor-api-<tenant>` limit, created when missing (an existing one is left as the
    # operator set it). None creates none.
    api_limit: int | None = DEFAULT_API_LIMIT
    # The emulator's default admin token; it reaches flow runs only through the workers' environment.
    token: str = "acme-admin-token"
    # Wipe `root` first (a stack of the same root must not be running).
    fresh: bool = False
    deploy: bool = True
    project_dir: Path = REPO
    startup_timeout: float = 180.0


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = cfg = config or StackConfig()
        self.workers: list[Proc] = []
        # Set by start(); replaced by restart_server() / restart_postgres().
        self.server: Proc | None = None
        self.postgres: Proc | None = None
        self.startup_seconds = 0.0
        self.automation_ids: dict[str, str] = {}
        # Read or made by start(), once the root exists.
        self.auth_string = ""
        self.root = cfg.root.resolve()
        self.logs = self.root / "logs"
        self.results = self.root / "results"
        self.procs = Processes(self.logs)
        self.server_port = cfg.server_port or free_port()
        self.emulator_port = cfg.emulator_port or free_port()
        self.pg = postgres.PostgresPlan(
            data_dir=self.root / "pg",
            socket_dir=self.root / "run",
            port=cfg.pg_port or (free_port() if cfg.pg_tcp else 5432),
            tcp=cfg.pg_tcp,
            durable=cfg.durable,
        )
        if cfg.heartbeat_seconds < 30:
            raise ValueError("Prefect's minimum flow-run heartbeat frequency is 30 s")
        self.automations = automations.load()
        if cfg.zombie_within_seconds is not None:
            self.automations = automations.with_zombie_window(self.automations, cfg.zombie_within_seconds)
        window = automations.zombie_window(self.automations)
        if window is not None and window < cfg.heartbeat_seconds + 10:
            raise ValueError(
                f"zombie window {window:.0f} s leaves no slack over {cfg.heartbeat_seconds} s heartbeats: "
                "healthy runs would be marked Crashed"
            )
        self.zombie_window = window

    # --- addresses -------------------------------------------------------------------------------------

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def worker_home(self, index: int) -> Path:
        return self.root / f"worker-{index}"

    @property
    def auth_file(self) -> Path:
        return self.root / AUTH_FILE

    @property
    def api_headers(self) -> dict[str, str]:
        """What an HTTP client sends to the stack's Prefect API (Prefect's own clients send the same)."""
        return {"Authorization": "Basic " + base64.b64encode(self.auth_string.encode()).decode()}

    @property
    def cli_env(self) -> dict[str, str]:
        """Environment for running the Prefect CLI against the stack (deploy, deployment run, ...)."""
        return clean_env() | {
            "PREFECT_HOME": str(self.root / "home"),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.auth_string,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def worker_env(self, index: int) -> dict[str, str]:
        cfg = self.config
        return (
            self.cli_env
            | {
                # Its own home: no profile, database or local storage shared with another "machine".
                "PREFECT_HOME": str(self.worker_home(index)),
                # The one shared place for checkpoints (alias PREFECT_LOCAL_STORAGE_PATH); in production
                # a bucket: PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=s3-bucket/... (docs/deployments.md).
                "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.results),
                "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
                # That storage is shared, so the start records live there too: no Prefect API calls
                # for them (engine.run_records; docs/fleet.md has what it saves).
                "SPLENDOR_RUN_RECORDS": "result-storage",
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(cfg.heartbeat_seconds),
                "PREFECT_WORKER_QUERY_SECONDS": str(cfg.worker_poll_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": str(cfg.worker_poll_seconds),
                # Flow runs inherit the worker's environment: this is how they reach Splendor.
                "SPLENDOR_API_BASE": self.emulator_url,
                "SPLENDOR_TENANT_ID": cfg.tenant,
                "SPLENDOR_TOKEN": cfg.token,
            }
            | cfg.extra_env
        )

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            # Ctrl-C or a failure half-way: whatever did start must not outlive us.
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop every child, newest first (workers, server, emulator, PostgreSQL last)."""
        with _signals_deferred():
            for proc in reversed(self.procs.started):
                if proc.alive():
                    log.info("stopping %s (pid %d)", proc.name, proc.pid)
                proc.stop()

    def _start(self) -> None:
        cfg = self.config
        if cfg.fresh:
            remove_state(self.root)
        for path in (self.root, self.logs, self.results, self.root / "server", self.root / "home"):
            path.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the postgres user must reach pg/ and run/ below it
        self.auth_string = auth_string(self.auth_file)
        self._place_postgres()
        for index in range(1, cfg.workers + 1):
            self.worker_home(index).mkdir(exist_ok=True)
        socket_path = self.pg.socket_dir / f".s.PGSQL.{self.pg.port}"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise StackError(f"socket path too long for a unix socket: {socket_path}; use a shorter root")
        for name, port in (("Prefect server", self.server_port), ("emulator", self.emulator_port)):
            if not port_is_free(port):
                raise StackError(f"port {port} for the {name} is in use (pass 0 for a free port)")

        log.info("PostgreSQL: %s", self.pg.data_dir)
        postgres.prepare(self.pg, postgres.find_bindir(), self.logs / "initdb.log")
        self.postgres = self._start_postgres()

        log.info("emulator and Prefect server")
        emulator = self.procs.start(
            "emulator",
            [
                sys.executable, "-m", "splendor_emulator", "--host", "127.0.0.1",
                "--port", str(self.emulator_port), "--state", str(self.root / "emulator.sqlite"),
                *cfg.emulator_args,
            ],
            clean_env(),
            cfg.project_dir,
        )  # fmt: skip
        self.server = self._start_server()
        self._wait_http(f"{self.emulator_url}/_emulator/health", emulator)
        self._wait_http(f"{self.api_url}/health", self.server)

        log.info("work pool, deployments, automations, %d workers", cfg.workers)
        self._ensure_pool()
        if cfg.api_limit is not None:
            self.ensure_api_limit(cfg.api_limit)
        deploy = self._start_deploy() if cfg.deploy else None
        try:
            since = datetime.now(UTC)
            self.workers = [self._start_worker(index) for index in range(1, cfg.workers + 1)]
            self._wait_workers(since, self.workers)
            if deploy is not None:
                code = deploy.wait(timeout=cfg.startup_timeout)
                if code != 0:
                    raise StackError(
                        f"prefect deploy --all exited {code}:\n{_tail(self.logs / 'deploy.log')}"
                    )
            # After the deploy: apply checks that the deployments' runs send the heartbeats zombie
            # detection needs. The same code as `splendor-flows automations apply` (and `make deploy`).
            self._apply_automations()
        finally:
            if deploy is not None and deploy.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(deploy.pid, signal.SIGKILL)
                deploy.wait()

    def _place_postgres(self) -> None:
        """Keep the cluster below the root, or where the postgres user can reach it (and say where)."""
        home = postgres.cluster_home(self.root)
        if home != self.root:
            log.warning(
                "PostgreSQL cluster kept in %s: the `%s` user cannot traverse the directories above %s",
                home, postgres.SUPERUSER, self.root,
            )  # fmt: skip
        self.pg.data_dir, self.pg.socket_dir = home / "pg", home / "run"

    def _apply_automations(self) -> None:
        try:
            applied = automations.apply(
                self.api_url,
                self.automations,
                notify_url=self.config.notify_url,
                auth_string=self.auth_string,
            )
        except (ValueError, automations.AutomationsError) as exc:
            raise StackError(f"automations: {exc}") from None
        self.automation_ids = applied.ids
        log.info("automations: %s", applied.totals())
        # One line per reason: without a webhook, the six notifying automations share one.
        by_reason: dict[str, list[str]] = {}
        for name, why in applied.skipped.items():
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            log.warning("skipped %s: %s", ", ".join(names), why)
        for warning in applied.warnings:
            log.warning("%s", warning)

    def _start_postgres(self, replacing: Proc | None = None) -> Proc:
        proc = postgres.start(self.pg, postgres.find_bindir(), self.procs, clean_env(), replacing)
        postgres.wait_ready(self.pg, proc, timeout=60)
        return proc

    def _start_server(self, replacing: Proc | None = None) -> Proc:
        cfg = self.config
        server_env = self.cli_env | {
            "PREFECT_HOME": str(self.root / "server"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.pg.dsn,
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
            "PREFECT_UI_ENABLED": "true" if cfg.ui else "false",
            # Concurrency leases on disk, not in the server's memory: a restart must not forget who holds a
            # source's slot, or the slot stays taken with no lease left to expire (source_lock).
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASES_ON_DISK,
        } | cfg.extra_env  # fmt: skip
        return self.procs.start(
            "server",
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.server_port)],
            server_env,
            cfg.project_dir,
            home=self.root / "server",
            replacing=replacing,
        )

    def _start_deploy(self) -> "subprocess.Popen[bytes]":
        # In the background: it imports every flow (seconds) while the workers start.
        with (self.logs / "deploy.log").open("wb") as handle:
            return subprocess.Popen(
                [PREFECT, "--no-prompt", "deploy", "--all"],
                env=self.cli_env,
                cwd=self.config.project_dir,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_http(self, url: str, proc: Proc) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise StackError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise StackError(f"{proc.name} not healthy at {url}:\n{proc.tail()}")

    def _ensure_pool(self) -> None:
        response = httpx.get(f"{self.api_url}/work_pools/{POOL}", headers=self.api_headers, timeout=30)
        if response.status_code == 200:
            return
        # The CLI fills in the process worker's default job template, which a bare REST call would not.
        self.prefect("work-pool", "create", POOL, "--type", "process")

    @property
    def api_limit_name(self) -> str:
        return f"splendor-api-{self.config.tenant}"

    def ensure_api_limit(self, limit: int, *, update: bool = False) -> None:
        """Create the tenant's global concurrency limit; with `update`, also set an existing one."""
        existing = httpx.get(
            f"{self.api_url}/v2/concurrency_limits/{self.api_limit_name}",
            headers=self.api_headers,
            timeout=30,
        )
        if existing.status_code == 200:
            if update:
                self.api("PATCH", f"/v2/concurrency_limits/{self.api_limit_name}", json={"limit": limit})
            return
        self.api("POST", "/v2/concurrency_limits/", json={"name": self.api_limit_name, "limit": limit})

    def _start_worker(self, index: int, replacing: Proc | None = None, limit: int | None = None) -> Proc:
        return self.procs.start(
            f"worker-{index}",
            [
                PREFECT, "worker", "start", "--pool", POOL, "--type", "process",
                "--name", self.worker_name(index), "--limit", str(limit or self.config.worker_limit),
            ],
            self.worker_env(index),
            self.config.project_dir,
            home=self.worker_home(index),
            replacing=replacing,
        )  # fmt: skip

    @staticmethod
    def worker_name(index: int) -> str:
        return f"stack-worker-{index}"

    def _wait_workers(self, since: datetime, procs: list[Proc]) -> None:
        names = {self.worker_name(self.workers.index(p) + 1) for p in procs}
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            for proc in procs:
                if not proc.alive():
                    raise StackError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")
            online = {
                w["name"]
                for w in self.api("POST", f"/work_pools/{POOL}/workers/filter", json={})
                if w["status"] == "ONLINE" and datetime.fromisoformat(w["last_heartbeat_time"]) >= since
            }
            if names <= online:
                return
            time.sleep(0.3)
        raise StackError(f"workers not online: {sorted(names)}")

    def check_alive(self) -> Proc | None:
        """The first child that has exited, if any."""
        return next((p for p in self.procs.started if not p.alive()), None)

    # --- its Prefect CLI and API (the start uses both) ---------------------------------------------------

    def prefect(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the Prefect CLI against the stack, from the project directory."""
        done = subprocess.run(
            [PREFECT, *args],
            env=self.cli_env,
            cwd=self.config.project_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(
                f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method, f"{self.api_url}{path}", headers=self.api_headers, timeout=30, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def summary(self) -> str:
        cfg = self.config
        worker_lines = "\n".join(
            f"                   {w.name}: pid {w.pid}, PREFECT_HOME={w.home}" for w in self.workers
        )
        window = f"{self.zombie_window:.0f} s" if self.zombie_window is not None else "none"
        lines = [
            f"Splendor stack up in {self.startup_seconds:.1f} s  (root {self.root})",
            f"  Prefect UI       {self.ui_url}" + ("" if cfg.ui else "  (UI disabled)"),
            f"  Prefect API      {self.api_url}",
            f"  PostgreSQL       {self.pg.dsn}",
            f"                   cluster {self.pg.data_dir}",
            "                   no password; "
            + (f"127.0.0.1:{self.pg.port} and " if self.pg.tcp else "")
            + f"socket dir {self.pg.socket_dir} (mode 0700: only its owner can connect)",
            f"                   {self.pg.psql}",
            f"  Emulator         {self.emulator_url}  (tenant {cfg.tenant}; SPLENDOR_* set on workers)",
            f"  Work pool        {POOL}, {len(self.workers)} process workers, heartbeats every "
            f"{cfg.heartbeat_seconds} s, zombie window {window}:",
            worker_lines,
            f"  Results          {self.results}  (shared by every worker)",
            f"  Automations      {', '.join(self.automation_ids) or 'none'}",
            f"  API limit        global concurrency limit {self.api_limit_name}"
            + (
                f" (created with {cfg.api_limit} slots when missing)"
                if cfg.api_limit is not None
                else ": not created"
            ),
            f"  API auth         required: the auth string is in {self.auth_file} (mode 0600); the UI asks",
            "                   for it (user and password around its first colon)",
            f"  Logs             {self.logs}/",
            f"  CLI              export PREFECT_API_URL={self.api_url}",
            f'                   export PREFECT_API_AUTH_STRING="$(cat {self.auth_file})"',
            f"  Stop             Ctrl-C here, or kill -TERM {os.getpid()}",
        ]
        return "\n".join(lines)


def auth_string(path: Path) -> str:
    """The stack's API auth string: the one in `path`, else a new random one written there, mode 0600.

    Kept across restarts so that workers, profiles and browsers that already have it keep working.
    """
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        path.chmod(0o600)
        return value
    value = f"{AUTH_USER}:{secrets.token_urlsafe(32)}"
    path.unlink(missing_ok=True)
    # Created 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def remove_state(root: Path) -> None:
    """Remove a (stopped) stack's state: its root and, when it had to be kept elsewhere, its cluster."""
    postgres.remove_relocated(root)
    shutil.rmtree(root, ignore_errors=True)


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Let a stop run to its end: a second Ctrl-C must not leave half the stack running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
