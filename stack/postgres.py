"""PostgreSQL for the stack: a private cluster reachable only by the user running the stack.

The cluster listens on a unix socket in a directory only its owner can enter (0700), and on no TCP port
unless asked to (then 127.0.0.1 only). `initdb -A trust` writes trust rules for local sockets and loopback
only, and no password exists at all: who can reach the socket is the whole access control, which is why
the socket directory's mode matters.

Run as root, PostgreSQL runs as the `postgres` system user, which must traverse every directory above
the cluster. A checkout under a 0700 directory (root's home in most containers, a `mktemp -d` folder)
is out of its reach: the cluster then lives in a per-checkout directory under /var/tmp instead, named
from a digest of the stack's root so that every start of that stack finds the same cluster.
"""

import asyncio
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from stack.processes import Proc, Processes, StopPlan

# SIGINT is PostgreSQL's "fast" shutdown (roll back sessions, checkpoint, exit); SIGQUIT is "immediate"
# (crash recovery on next start). Signals go to the postmaster only: it coordinates its backends.
POSTGRES_STOP: StopPlan = (
    (signal.SIGINT, 30.0, False),
    (signal.SIGQUIT, 5.0, False),
    (signal.SIGKILL, 5.0, True),
)
DATABASE = "prefect"
SUPERUSER = "postgres"
# Where a cluster goes when the postgres user cannot reach the stack's root: sticky and world-traversable
# on every Linux, and kept across reboots (unlike /tmp on many systems), like the stack's own state.
RELOCATION_BASE = Path("/var/tmp")


class PostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The PostgreSQL server binaries: $PG_BINDIR, else the newest /usr/lib/postgresql/N/bin, else PATH."""
    configured = os.environ.get("PG_BINDIR")
    candidates = [Path(configured)] if configured else []
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    raise PostgresError(
        "PostgreSQL server binaries not found (initdb, postgres). Install them, e.g. "
        "`apt-get install -y postgresql-15`, or set PG_BINDIR."
    )


def run_as_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresError("running as root needs a `postgres` system user to run PostgreSQL") from None
    return SUPERUSER


@dataclass
class PostgresPlan:
    data_dir: Path
    socket_dir: Path
    port: int
    tcp: bool
    durable: bool

    @property
    def dsn(self) -> str:
        """SQLAlchemy URL for Prefect's server: no password, socket (or loopback) only."""
        if self.tcp:
            return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"
        return f"postgresql+asyncpg://{SUPERUSER}@/{DATABASE}?host={self.socket_dir}&port={self.port}"

    @property
    def psql(self) -> str:
        return f"psql -h {self.socket_dir} -p {self.port} -U {SUPERUSER} {DATABASE}"


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user=user, group=user)


def _can_use(path: Path, user: str, *, write: bool) -> bool:
    test = ["test", "-w", str(path), "-a", "-x", str(path)] if write else ["test", "-x", str(path)]
    return subprocess.run(test, user=user, group=user, extra_groups=[], check=False).returncode == 0


def relocated_home(root: Path) -> Path:
    """The directory under /var/tmp that holds the cluster of the stack at `root` when its user cannot
    reach `root`; the same for every start of that stack."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return RELOCATION_BASE / f"splendor-stack-pg-{digest}"


def cluster_home(root: Path) -> Path:
    """The directory to hold the cluster (`pg/`) and its socket directory (`run/`): `root` when the user
    PostgreSQL runs as can traverse it, else relocated_home(root), created private to us.

    /var/tmp is writable by anyone: a directory of that name made by another user (or a symlink) could
    hand them the cluster, so an existing one must be ours, a real directory, writable by nobody else.
    """
    user = run_as_user()
    if user is None or _can_use(root, user, write=False):
        return root
    home = relocated_home(root)
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o755)
    info = home.lstat()
    if not home.is_dir() or home.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise PostgresError(
            f"{home} exists but is not a directory of uid {os.geteuid()} that only it can write; "
            "remove it and start again"
        )
    # Traversable by the postgres user; pg/ and run/ below stay private to it (0700).
    home.chmod(0o755)
    return home


def remove_relocated(root: Path) -> None:
    """Remove the cluster relocated for the stack at `root`, if there is one (with `root` itself gone,
    nothing else would ever find it)."""
    home = relocated_home(root)
    if home.is_dir() and not home.is_symlink() and home.lstat().st_uid == os.geteuid():
        shutil.rmtree(home)


def _check_reachable(path: Path, user: str | None) -> None:
    """Fail early, with the reason, when the postgres user cannot write a directory of ours."""
    if user is None:
        return
    if not _can_use(path, user, write=True):
        raise PostgresError(
            f"the `{user}` user cannot use {path}: every parent directory must be traversable by it "
            "(a 0700 parent, e.g. pytest's temp dir, is not)"
        )


def _initialised(data_dir: Path) -> bool:
    return (data_dir / "PG_VERSION").is_file()


def _clear_stale_pid(plan: PostgresPlan) -> None:
    """Remove a postmaster.pid (and socket lock) left by a postmaster that no longer runs.

    PostgreSQL itself refuses to start when the pid in the file belongs to any live process, which after
    a reboot or a SIGKILL can be an unrelated one.
    """
    pid_file = plan.data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        pid = 0
    if pid > 0:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            comm, cwd = "", ""
        if comm == "postgres" and Path(cwd).resolve() == plan.data_dir.resolve():
            raise PostgresError(
                f"a PostgreSQL server (pid {pid}) already runs on {plan.data_dir}; stop it first, e.g. "
                f"`su {SUPERUSER} -c '{find_bindir()}/pg_ctl stop -D {plan.data_dir}'`"
            )
    pid_file.unlink()
    for lock in plan.socket_dir.glob(".s.PGSQL.*"):
        lock.unlink()


def prepare(plan: PostgresPlan, bindir: Path, log: Path) -> None:
    """initdb on first use (reused afterwards), directories owned by the postgres user."""
    user = run_as_user()
    for path in (plan.data_dir, plan.socket_dir):
        path.mkdir(parents=True, exist_ok=True)
        _chown(path, user)
        _check_reachable(path, user)
    plan.data_dir.chmod(0o700)
    # Only the owner (and root) may open the socket: with trust authentication, reaching it is logging in.
    plan.socket_dir.chmod(0o700)
    if not _initialised(plan.data_dir):
        if any(plan.data_dir.iterdir()):
            raise PostgresError(f"{plan.data_dir} is not empty but holds no PostgreSQL cluster")
        args = [
            str(bindir / "initdb"),
            "-D",
            str(plan.data_dir),
            "-U",
            SUPERUSER,
            # Trust on local sockets and loopback only (initdb writes no other rule); no password.
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        if not plan.durable:
            args.append("--no-sync")
        with log.open("ab") as handle:
            done = subprocess.run(
                args, user=user, group=user, extra_groups=[] if user else None, stdout=handle,
                stderr=subprocess.STDOUT, cwd=plan.data_dir, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise PostgresError(f"initdb failed (exit {done.returncode}); see {log}")
    _clear_stale_pid(plan)


def start(
    plan: PostgresPlan,
    bindir: Path,
    procs: Processes,
    env: dict[str, str],
    replacing: Proc | None = None,
) -> Proc:
    user = run_as_user()
    args = [
        str(bindir / "postgres"),
        "-D",
        str(plan.data_dir),
        "-c",
        f"port={plan.port}",
        "-c",
        f"unix_socket_directories={plan.socket_dir}",
        "-c",
        "unix_socket_permissions=0700",
        "-c",
        f"listen_addresses={'127.0.0.1' if plan.tcp else ''}",
    ]
    if not plan.durable:
        # Throw-away clusters (tests): skip the disk flushes that make a fresh schema migration slow.
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    return procs.start(
        "postgres",
        args,
        env,
        plan.data_dir,
        stop_plan=POSTGRES_STOP,
        user=user,
        home=plan.data_dir,
        replacing=replacing,
    )


async def _connect(plan: PostgresPlan, database: str) -> "asyncpg.Connection":
    if plan.tcp:
        return await asyncpg.connect(host="127.0.0.1", port=plan.port, user=SUPERUSER, database=database)
    return await asyncpg.connect(host=str(plan.socket_dir), port=plan.port, user=SUPERUSER, database=database)


async def _wait_and_create_db(plan: PostgresPlan, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise PostgresError(f"postgres exited {proc.popen.returncode}:\n{proc.tail()}")
        try:
            conn = await _connect(plan, "postgres")
            break
        except (OSError, asyncpg.PostgresError) as exc:
            # Refused or "the database system is starting up": not ready yet.
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"postgres not ready after {timeout:.0f} s: {exc}\n{proc.tail()}"
                ) from exc
            await asyncio.sleep(0.1)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def wait_ready(plan: PostgresPlan, proc: Proc, timeout: float = 60.0) -> None:
    asyncio.run(_wait_and_create_db(plan, proc, timeout))


async def fetch(plan: PostgresPlan, query: str, *args: object) -> list[dict[str, object]]:
    """Run one read query on the `prefect` database (used by tests to look behind the API)."""
    conn = await _connect(plan, DATABASE)
    try:
        rows = await conn.fetch(query, *args)
    finally:
        await conn.close()
    return [dict(row) for row in rows]
