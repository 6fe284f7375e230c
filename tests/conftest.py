"""How the suite is split across pytest-xdist processes (`make test`: `pytest -n 7` by default).

Most tests are independent and go to whichever process is free. The tests that share one expensive
package-scoped server fixture form a group that one process runs from start to end, so that each server
starts once, not once in every process that happens to draw one of its tests:

- tests/e2e_stack: the production-shaped stacks (PostgreSQL, a Prefect server, two workers), split in two
  groups, each on a stack of its own; a test file not named in STACK_GROUPS joins the first;
- tests/e2e: the SQLite `prefect server start` with its process worker;
- tests/browser: the Prefect server with its UI, the served deployment and Chromium; the e2e source-lock
  tests join it (they mostly wait out lease bounds, so a server of their own there costs little);
- tests/e2e/test_e2e_5_admin_waits.py: its module's own SQLite server, whose worker it kills.

The groups go out first, largest first, so the long stack runs start at once and the short tests fill
the other processes around them. Without `-n` none of this applies and every package runs in one process,
in collection order, as before.
"""

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.prefect_db import HARNESS_DB_NAME, seeded_harness_directories

REPO = Path(__file__).resolve().parents[1]

# Each xdist process gets a PREFECT_HOME of its own, set before anything imports Prefect (which reads it
# once): flows keep their run history there (splendor_flows.orchestration.engine_adapter), and two
# processes rewriting one history file would race.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker:
    _home = Path(os.environ.get("PREFECT_HOME") or REPO / ".prefect-home") / "xdist" / _worker
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Prefect test server (`prefect_test_harness`) per process, for every package that uses it.

    Defined here, not in tests/flows/conftest.py whose same-named fixture makes it autouse: a fixture
    imported into several conftests is a separate fixture in each, and each would start its own server
    (about 4 s of CPU apiece, on a migrated database: tests/prefect_db.py), once per package in every
    xdist process.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    # The harness does not isolate cache records: without the storage override, checkpoints from
    # earlier runs would make tests pass without executing steps.
    settings = {
        PREFECT_RESULTS_LOCAL_STORAGE_PATH: results,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    # 180 s: when the machine is busy (other suites, benchmarks) a server start has been seen to take
    # longer than 90, and a process whose server never starts errors every test it draws.
    with temporary_settings(updates=settings), contextlib.ExitStack() as harness:
        # The harness's server starts on a copy of a migrated database (tests/prefect_db.py).
        with seeded_harness_directories():
            harness.enter_context(prefect_test_harness(server_startup_timeout=180))
        database = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
        assert database.endswith(f"/{HARNESS_DB_NAME}"), f"unseeded harness database: {database}"
        # Subprocesses (the crash test) talk to the same API and result storage.
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(results)
        # The harness's server is an ephemeral one, which runs no repossessor: a waiter takes back the
        # source slot of a process the crash tests killed (orchestration/source_lock.py).
        os.environ["SPLENDOR_PREFECT_REPOSSESSOR"] = "off"
        yield results


# The second stack of tests/e2e_stack: the fleet scenarios (the CPU-heaviest, and the ones that restart the
# workers with other limits), the interval schedule, the smoke test and the PostgreSQL restart; the first
# keeps the worker kill, the server restart and the tenant. A key is a file or one test of it (its node id
# after the package). Balanced on durations measured in a whole run: each stack's tests took 582 and 433 s
# with the PostgreSQL restart (80 s) on the first, which then ended the suite alone.
STACK_GROUPS = {
    "test_stack_sharded_fleet.py": "e2e_stack-2",
    "test_stack_sharded_fleet_crash.py": "e2e_stack-2",
    "test_stack_schedule.py": "e2e_stack-2",
    "test_stack_smoke.py": "e2e_stack-2",
    "test_stack_window_tick.py": "e2e_stack-2",
    "test_stack_outages.py::test_a_sync_in_flight_survives_a_restart_of_the[postgres]": "e2e_stack-2",
}
# Packages whose tests share one package-scoped server fixture.
PACKAGE_GROUPS = {"e2e": "e2e", "browser": "browser"}
# Files that run apart from their package's group. The source-lock tests wait out the lease bounds (more
# than three minutes, nearly all of it sleeping): beside the browser suite they do not lengthen the e2e
# one (their process starts the e2e server for them). The admin-waits tests start a server of their own
# (module-scoped), so a group of their own costs no extra server and takes four minutes off the e2e one.
FILE_GROUPS = {
    "tests/e2e/test_e2e_6_source_lock.py": "browser",
    "tests/e2e/test_e2e_5_admin_waits.py": "e2e-admin-waits",
}


def group_of(nodeid: str) -> str | None:
    """The group a test belongs to (from its node id: the scheduler sees nothing else), or None."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tests":
        return None
    package, filename = parts[1], parts[-1]
    if path in FILE_GROUPS:
        return FILE_GROUPS[path]
    if package == "e2e_stack":
        test = f"{filename}::{nodeid.split('::', 1)[1]}" if "::" in nodeid else filename
        return STACK_GROUPS.get(test) or STACK_GROUPS.get(filename, "e2e_stack-1")
    return PACKAGE_GROUPS.get(package)


@pytest.hookimpl(optionalhook=True)  # also loads with xdist switched off (`-p no:xdist`)
def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """xdist's scheduler, with work units that are whole groups (or single tests).

    Not `--dist loadgroup`: xdist 3.8 tags grouped tests by rewriting `item._nodeid`, which pytest 9.2 no
    longer reads, so its groups silently fall apart. Grouping by node id here needs no marks at all.
    """
    from xdist.scheduler import LoadScopeScheduling

    class SharedServerScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            # LoadScopeScheduling orders units by test count, largest first: the groups lead.
            return group_of(nodeid) or nodeid

    return SharedServerScheduling(config, log)


# Long tests outside any group, moved to the front of the collection in this order (longest first): single
# tests go out in collection order, and one this long that started last would finish last, alone. Each
# entry is one test, not a file: xdist hands every node that is not running a group two units at the start
# and one more only when it is nearly out of work, so a short test listed here would push the next long one
# back behind a group's last, long tests (a run put the short soak 7th, behind three short outage tests,
# and it started 476 s in, on the node that had just finished the browser group).
LONG_FIRST = (
    "tests/reliability/test_short_soak.py::test_short_soak_keeps_every_invariant",
    "tests/flows/test_crash.py::test_sigkill_mid_poll_then_resume_attaches",
    "tests/reliability/test_prefect_outage.py::test_pipeline_rides_out_a_prefect_api_answering_503",
)


def long_first_rank(nodeid: str) -> int:
    """Where a test goes in the collection: its place in LONG_FIRST, else after all of them."""
    return LONG_FIRST.index(nodeid) if nodeid in LONG_FIRST else len(LONG_FIRST)


# What starts a server for its tests: the packages that exist to drive one (the emulator's own suite and
# the doctor's, which probes a live API), and the fixtures that start a Prefect test server or an emulator.
# Their tests get the `server` marker, which `make check` leaves out (`-m "not server"`).
SERVER_PACKAGES = frozenset({"e2e", "e2e_stack", "browser", "emulator", "doctor"})
SERVER_FIXTURES = frozenset({"prefect_harness", "emulator", "emu", "stack"})


def needs_server(item: pytest.Item) -> bool:
    package = Path(item.path).relative_to(REPO / "tests").parts[0]
    return package in SERVER_PACKAGES or not SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.fixture(autouse=True)
def _servers_only_where_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make check` (SPLENDOR_TESTS_NO_SERVER=1), a test without the `server` marker that starts
    a server anyway fails at its first listening socket, instead of quietly slowing the inner loop."""
    if os.environ.get("SPLENDOR_TESTS_NO_SERVER") != "1" or request.node.get_closest_marker("server"):
        return
    nodeid = request.node.nodeid

    def refuse(sock: socket.socket, *args: Any) -> None:
        raise RuntimeError(f"{nodeid} starts a server: add its fixture or package to tests/conftest.py")

    monkeypatch.setattr(socket.socket, "listen", refuse)


# First, so the marker is on the items before `-m` selects among them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if needs_server(item):
            item.add_marker(pytest.mark.server)
    items.sort(key=lambda item: long_first_rank(item.nodeid))
