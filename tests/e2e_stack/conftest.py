"""One production-shaped stack (PostgreSQL, Prefect server, emulator, 2 process workers) for this package.

Package-scoped: it starts once (about 15 s) and is stopped, every child process included, before other
suites run. Its state lives in a fresh directory under var/ and is removed afterwards, with its PostgreSQL
cluster wherever that had to go (under /var/tmp when the `postgres` user cannot reach the checkout).
"""

import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.lifecycle import remove_state
from tests.stack_harness import StackConfig, StackHarness

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "deployments" / "examples" / "stripe-demo.yaml"
SECRET_BLOCK = "demo-stripe-credentials"
# The shipped window is 90 s; 40 s is the shortest that keeps 10 s of slack over 30 s heartbeats (the
# minimum Prefect allows), so a healthy run is never marked Crashed while the test stays short.
ZOMBIE_WITHIN_SECONDS = 40.0


@pytest.fixture(scope="package")
def stack() -> Iterator[StackHarness]:
    (REPO / "var").mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="e2e-stack-", dir=REPO / "var"))
    config = StackConfig(
        root=root,
        workers=2,
        server_port=0,
        emulator_port=0,
        durable=False,
        ui=False,
        # 2 s, not 1: an idle stack then uses about 1 s less CPU a minute (4.1 -> 3.0 s measured; its
        # server answers half the polls) in a suite that is CPU-bound, for a pickup 0.5 s later on average.
        worker_poll_seconds=2.0,
        zombie_within_seconds=ZOMBIE_WITHIN_SECONDS,
        emulator_args=("--sync-seconds", "2", "--ingest-seconds", "0.05"),
        extra_env={
            # A run waiting for the deployment's slot retries after 1 s instead of 30 s.
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
            "SPLENDOR_MAX_ATTEMPTS": "3",
            "SPLENDOR_MAX_RETRY_SECONDS": "3",
        },
    )
    try:
        with StackHarness(config) as running:
            save_demo_secret(running)
            yield running
    finally:
        remove_state(root)


def save_demo_secret(stack: StackHarness) -> None:
    """The connector credentials the demo spec names, as a Secret block on the stack's server."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = {PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: stack.auth_string}
    with temporary_settings(updates=settings):
        Secret(value={"api_key": "sk_test_demo", "account_id": "acct_demo0001"}).save(
            SECRET_BLOCK, overwrite=True
        )


def demo_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(DEMO_SPEC.read_text())
    return spec | overrides


def connect(stack: StackHarness, spec: dict[str, Any]) -> dict[str, Any]:
    """Onboard a source through the connect-source deployment, without its first sync."""
    run = stack.create_run("connect-source", {"spec": spec, "sync": False})
    done = stack.wait_run(run["id"], timeout=120)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    return done


def emulator_source(stack: StackHarness, source_key: str) -> tuple[int, list[dict[str, Any]]]:
    """The source's id and its connector runs, as the emulator (Splendor) sees them."""
    state = stack.emulator("GET", "/_emulator/state", params={"tenant": stack.config.tenant})
    tenant = state[stack.config.tenant]
    [source] = [s for s in tenant["sources"] if s["source_key"] == source_key]
    runs = [r for r in tenant["runs"] if r["source_id"] == source["source_id"]]
    return source["source_id"], runs


def call_statuses(stack: StackHarness, source_id: int, route_suffix: str) -> list[int | None]:
    """HTTP statuses of the mutating calls on one source's route, in order (the emulator's call log);
    None for a call whose connection was dropped."""
    mutations = stack.emulator("GET", "/_emulator/mutations")["mutations"]
    return [
        m["status"]
        for m in mutations
        if m["route"].endswith(route_suffix) and str(m["path_params"].get("source_id")) == str(source_id)
    ]


def successful_calls(stack: StackHarness, source_id: int, route_suffix: str) -> int:
    """Mutating calls on one source's route that Splendor accepted."""
    return sum(1 for s in call_statuses(stack, source_id, route_suffix) if s is not None and 200 <= s < 300)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """Poll `probe` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def polling_task(stack: StackHarness, run_id: str) -> bool:
    """Whether the flow run is inside its poll step (waiting for its Splendor run)."""
    tasks = stack.api("POST", "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}})
    return any(t["name"].startswith("poll") and t["state_type"] == "RUNNING" for t in tasks)


def state_after(stack: StackHarness, run_id: str, state_type: str, after: float) -> dict[str, Any] | None:
    for state in stack.run_states(run_id):
        if state["type"] == state_type and seconds(state["timestamp"]) > after:
            return state
    return None


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()
