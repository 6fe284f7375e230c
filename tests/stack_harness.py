"""What the tests do to a running stack: outages, runs and schedules over its REST API, SQL on its database.

`make stack` (stack/lifecycle.py) starts, prints and stops the stack; `StackHarness` is that stack with
these test-side tools added, so a test starts the very stack an operator runs.

    with StackHarness(StackConfig(root=Path("var/stack-test"))) as stack:
        run = stack.create_run("sync-source", {"source_key": "stripe-demo"})
        stack.wait_run(run["id"])
"""

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from stack import postgres
from stack.lifecycle import Stack, StackConfig, StackError
from stack.processes import Proc, is_ancestor

# StackConfig is re-exported: whoever starts a harness configures it.
__all__ = ["FINAL_STATES", "Outage", "StackConfig", "StackHarness"]

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass
class Outage:
    """One stop and start of a stack component, in wall-clock seconds (comparable with Prefect's
    timestamps); filled in as it happens."""

    component: str
    stopping_at: float  # the stop began: from here on clients may be refused
    down_at: float = 0.0  # the process was gone
    up_at: float = 0.0  # it answered again (health endpoint, or a new database connection)

    @property
    def seconds(self) -> float:
        return self.up_at - self.stopping_at


class StackHarness(Stack):
    """The stack, with what tests do to it."""

    # --- outages ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _down(
        self, component: str, proc: Proc | None, start_again: Callable[[Proc], None]
    ) -> Iterator[Outage]:
        """`proc` stopped for the body of the block, then `start_again(proc)`: also after a failing body,
        since the other tests share this stack."""
        assert proc is not None, "the stack is not started"
        outage = Outage(component, stopping_at=time.time())
        proc.stop()
        outage.down_at = time.time()
        try:
            yield outage
        finally:
            start_again(proc)
            outage.up_at = time.time()

    def server_down(self) -> contextlib.AbstractContextManager[Outage]:
        """The Prefect server is stopped for the body of the block (as an upgrade or a crash-looping pod
        would leave it), then started again on the same database and port. Workers and flow runs keep
        running; whatever they send meanwhile is refused."""

        def start_again(old: Proc) -> None:
            self.server = self._start_server(replacing=old)
            self._wait_http(f"{self.api_url}/health", self.server)

        return self._down("Prefect server", self.server, start_again)

    def postgres_down(self) -> contextlib.AbstractContextManager[Outage]:
        """PostgreSQL is stopped (fast shutdown: open sessions are cut) for the body of the block, then
        started again on the same cluster, as a failover or a minor-version upgrade would do. The Prefect
        server stays up and fails what needs the database meanwhile (HTTP 500 in 3.9.1, which its clients
        do not retry: docs/deployments.md)."""

        def start_again(old: Proc) -> None:
            self.postgres = self._start_postgres(replacing=old)

        return self._down("PostgreSQL", self.postgres, start_again)

    def restart_server(self, down_seconds: float = 0.0) -> Outage:
        with self.server_down() as outage:
            time.sleep(down_seconds)
        return outage

    def restart_postgres(self, down_seconds: float = 0.0) -> Outage:
        with self.postgres_down() as outage:
            time.sleep(down_seconds)
        return outage

    def restart_worker(self, proc: Proc, limit: int | None = None) -> Proc:
        """Replace a (killed) worker by a new process with the same name and home: the machine is back.

        `limit` changes its `--limit` (flow runs at once; 1 makes each worker take one shard of a fleet).
        """
        position = self.workers.index(proc)
        proc.stop()
        since = datetime.now(UTC)
        # In the dead one's place, so check_alive() does not report the process this one replaces.
        self.workers[position] = self._start_worker(position + 1, replacing=proc, limit=limit)
        self._wait_workers(since, [self.workers[position]])
        return self.workers[position]

    # --- its REST APIs --------------------------------------------------------------------------------------

    def emulator(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.emulator_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def deployment(self, deployment: str) -> dict[str, Any]:
        """`flow/deployment` (a bare name means flow and deployment share it, as here)."""
        flow, _, name = deployment.partition("/")
        found: dict[str, Any] = self.api("GET", f"/deployments/name/{flow}/{name or flow}")
        return found

    def create_run(
        self, deployment: str, parameters: dict[str, Any], job_variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A run of `flow/deployment`, as `prefect deployment run` makes it (`--job-variable` included)."""
        dep = self.deployment(deployment)
        body: dict[str, Any] = {"parameters": parameters}
        if job_variables is not None:
            body["job_variables"] = job_variables
        run: dict[str, Any] = self.api("POST", f"/deployments/{dep['id']}/create_flow_run", json=body)
        return run

    def add_interval_schedule(
        self,
        deployment: str,
        seconds: float,
        parameters: dict[str, Any],
        slug: str,
        first_run_in: float | None = None,
    ) -> dict[str, Any]:
        """Add an active schedule every `seconds`, with its own parameters, to a deployment; its first run
        comes due `first_run_in` seconds from now (default: one interval). Keep that above 5 s: a slot
        already past when the scheduler first looks is skipped.

        Through the deployment's update (with slugs, as `prefect deploy` sends them), not a bare POST of
        the schedule: the update marks the deployment changed, so the server's recent-deployments
        scheduler (every 5 s) creates the runs, not its main loop (every 60 s); measured 4.6 s against
        0.6-43 s for a bare POST.
        """
        dep = self.deployment(deployment)
        if not all(s.get("slug") for s in dep["schedules"]):
            # Without slugs on every existing schedule the server would replace them all by this one.
            raise StackError(f"{deployment} has schedules without a slug; refusing to replace them")
        schedule = {
            "slug": slug,
            "active": True,
            "parameters": parameters,
            "schedule": {
                "interval": seconds,
                "anchor_date": (
                    datetime.now(UTC) + timedelta(seconds=seconds if first_run_in is None else first_run_in)
                ).isoformat(),
                "timezone": "UTC",
            },
        }
        self.api("PATCH", f"/deployments/{dep['id']}", json={"schedules": [schedule]})
        schedules = self.api("GET", f"/deployments/{dep['id']}/schedules")
        [added] = [s for s in schedules if s["slug"] == slug]
        return dict(added)

    def schedule_runs(self, deployment_id: str, schedule_id: str) -> list[dict[str, Any]]:
        """Every flow run a schedule created (past, running and pre-created future ones)."""
        body = {
            "deployments": {"id": {"any_": [deployment_id]}},
            # The scheduler pre-creates up to 100 future runs per schedule: stay under the API's page.
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
        }
        runs = self.api("POST", "/flow_runs/filter", json=body)
        return [r for r in runs if (r.get("created_by") or {}).get("id") == schedule_id]

    def remove_schedule(self, schedule: dict[str, Any], timeout: float = 120.0) -> list[dict[str, Any]]:
        """Delete a schedule and settle its runs: the server deletes its future ones, runs still waiting
        (Late, or AwaitingConcurrencySlot, which the server keeps) are cancelled, and runs already
        under way are waited for, so none of them holds the deployment's concurrency slot afterwards.
        Returns the schedule's runs that remain, all final."""
        deployment_id, schedule_id = str(schedule["deployment_id"]), str(schedule["id"])
        self.api("DELETE", f"/deployments/{deployment_id}/schedules/{schedule_id}")
        deadline = time.monotonic() + timeout
        while True:
            runs = self.schedule_runs(deployment_id, schedule_id)
            open_runs = [r for r in runs if r["state_type"] not in FINAL_STATES]
            if not open_runs:
                return runs
            if time.monotonic() > deadline:
                raise StackError(f"runs of schedule {schedule['slug']} still open: {open_runs}")
            for run in open_runs:
                if run["state_type"] == "SCHEDULED":
                    self.api(
                        "POST",
                        f"/flow_runs/{run['id']}/set_state",
                        json={"state": {"type": "CANCELLED", "message": "Its schedule was removed."}},
                    )
            time.sleep(0.5)

    def read_run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/flow_runs/{run_id}")
        return run

    def run_states(self, run_id: str) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self.api("GET", "/flow_run_states/", params={"flow_run_id": run_id})
        return sorted(states, key=lambda s: s["timestamp"])

    def run_logs(self, run_id: str, last: int = 30) -> list[str]:
        """The run's last `last` log lines (each attempt's), oldest first."""
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_DESC", "limit": last}
        logs: list[dict[str, Any]] = self.api("POST", "/logs/filter", json=body)
        return [f"{log['timestamp']} {log['message']}" for log in reversed(logs)]

    def wait_run(self, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the run is in a final state and return it."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.read_run(run_id)
            if run["state"]["type"] in FINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise StackError(f"run {run_id} still {run['state']['name']} after {timeout:.0f} s")
            time.sleep(0.5)

    def worker_running(self, run: dict[str, Any]) -> Proc | None:
        """The worker whose process tree holds the run's process (from its infrastructure pid)."""
        infra = run.get("infrastructure_pid") or ""
        pid = infra.rpartition(":")[2]
        if not pid.isdigit():
            return None
        return next((w for w in self.workers if w.alive() and is_ancestor(w.pid, int(pid))), None)

    def query(self, sql: str, *args: object) -> list[dict[str, object]]:
        """Read the Prefect server's PostgreSQL database directly."""
        return asyncio.run(postgres.fetch(self.pg, sql, *args))
