"""An already-migrated SQLite database for the Prefect servers the suite starts.

A `prefect server start` on an empty SQLite file spends most of its start-up running Prefect's migrations:
9.5 s of wall time and 8 s of CPU here, against 3.5 s and 3 s on a copy of a migrated file, and the suite
starts a few dozen such servers (the test harness in every xdist process; the e2e, browser, admin-waits
and automations servers; the ephemeral servers of the CLI and source-lock tests). So the migrations run
once per Prefect version into a template file under the repository's PREFECT_HOME, and each server starts
on a copy of it. The server still checks the schema at start-up (`PREFECT_SERVER_DATABASE_MIGRATE_ON_START`
stays on): a template that fell behind is brought up to date, only slower. The PostgreSQL stacks are left
alone, since they are what `make stack` runs.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / ".prefect-home" / "db-templates"


def _prefect_version() -> str:
    from prefect import __version__

    return str(__version__)


def template_db() -> Path:
    """The migrated template for this Prefect version, built on first use.

    xdist processes start together and each wants it: one builds it under a file lock, the others wait
    for that lock and find it done. The file appears by rename, never half written.
    """
    target = TEMPLATES / f"prefect-{_prefect_version()}.db"
    if target.exists():
        return target
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    with (TEMPLATES / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=TEMPLATES) as scratch:
            building = Path(scratch) / "prefect.db"
            env = os.environ | {
                "PREFECT_HOME": scratch,
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{building}",
            }
            result = subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0 or not building.exists():
                raise RuntimeError(
                    f"building the Prefect database template failed ({result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}"
                )
            os.replace(building, target)
    return target


def seed_home(home: Path) -> None:
    """Put a migrated database where a `prefect server start` with PREFECT_HOME=home looks for it."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db(), home / "prefect.db")


# The file name `prefect_test_harness` gives its database inside the directory it makes.
HARNESS_DB_NAME = "prefect-test.db"


@contextmanager
def seeded_harness_directories() -> Iterator[None]:
    """Make `prefect_test_harness` create its database directory with the template already in it.

    The harness makes that directory itself (`mkdtemp` in prefect.testing.utilities) and offers no way to
    pass a database in; its `mkdtemp` is replaced for the duration of the harness's start.
    """
    import prefect.testing.utilities as harness_module

    template = template_db()

    def seeded_mkdtemp() -> str:
        directory = tempfile.mkdtemp()
        shutil.copyfile(template, Path(directory) / HARNESS_DB_NAME)
        return directory

    with mock.patch.object(harness_module, "mkdtemp", seeded_mkdtemp):
        yield
