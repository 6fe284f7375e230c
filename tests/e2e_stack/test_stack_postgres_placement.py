"""Run as root, the stack's PostgreSQL runs as the `postgres` user: a stack root under a 0700 directory
(root's home in most containers, a `mktemp -d` folder) keeps its cluster under /var/tmp instead, where
that user can reach it, and a real PostgreSQL serves from there."""

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import postgres
from stack.lifecycle import clean_env, remove_state
from stack.processes import Processes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root runs PostgreSQL as another user; otherwise the root is always used"
)


def usable_by_postgres(path: Path) -> bool:
    probe = ["test", "-w", str(path), "-a", "-x", str(path)]
    user = postgres.SUPERUSER
    return subprocess.run(probe, user=user, group=user, extra_groups=[], check=False).returncode == 0


def stack_root(parent_mode: int, base: str | None = None) -> Path:
    parent = Path(tempfile.mkdtemp(prefix="pg-placement-", dir=base))
    parent.chmod(parent_mode)
    root = parent / "stack"
    root.mkdir()
    root.chmod(0o755)  # as Stack._start leaves it
    return root


@pytest.fixture
def private_root() -> Iterator[Path]:
    root = stack_root(0o700)
    yield root
    remove_state(root)
    shutil.rmtree(root.parent, ignore_errors=True)


def test_a_root_under_a_private_directory_serves_its_cluster_from_var_tmp(private_root: Path) -> None:
    home = postgres.cluster_home(private_root)

    assert home == postgres.relocated_home(private_root)
    assert home.parent == postgres.RELOCATION_BASE
    assert not usable_by_postgres(private_root)
    # The same root finds the same place on every start.
    assert postgres.cluster_home(private_root) == home

    plan = postgres.PostgresPlan(
        data_dir=home / "pg", socket_dir=home / "run", port=5432, tcp=False, durable=False
    )
    logs = private_root / "logs"
    logs.mkdir()
    postgres.prepare(plan, postgres.find_bindir(), logs / "initdb.log")
    assert usable_by_postgres(plan.data_dir) and usable_by_postgres(plan.socket_dir)
    # Private to the postgres user: reaching the socket is logging in.
    assert (plan.socket_dir.stat().st_mode & 0o777, plan.data_dir.stat().st_mode & 0o777) == (0o700, 0o700)

    procs = Processes(logs)
    proc = postgres.start(plan, postgres.find_bindir(), procs, clean_env())
    try:
        postgres.wait_ready(plan, proc, timeout=60)
        [row] = asyncio.run(postgres.fetch(plan, "SELECT current_setting('data_directory') AS dir"))
        assert row["dir"] == str(plan.data_dir)
    finally:
        proc.stop()

    remove_state(private_root)
    assert not home.exists() and not private_root.exists()


def test_a_reachable_root_keeps_its_cluster_below_it() -> None:
    root = stack_root(0o755, base=str(postgres.RELOCATION_BASE))
    try:
        assert postgres.cluster_home(root) == root
        assert not postgres.relocated_home(root).exists()
    finally:
        shutil.rmtree(root.parent)


def test_a_relocation_directory_made_by_someone_else_is_refused(private_root: Path) -> None:
    # Anyone can create it in /var/tmp before the stack does; it would hand them the cluster.
    squatted = postgres.relocated_home(private_root)
    squatted.mkdir(mode=0o755)
    shutil.chown(squatted, user=postgres.SUPERUSER)
    try:
        with pytest.raises(postgres.PostgresError, match="not a directory of uid 0 that only it can write"):
            postgres.cluster_home(private_root)
    finally:
        squatted.rmdir()
