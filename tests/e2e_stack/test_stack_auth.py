"""The stack's Prefect server requires its auth string: a client without it (or with another) is refused,
one with it is served, and the workers, the deploy and the CLI the stack runs all have it."""

import os
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from stack import POOL
from stack.lifecycle import PREFECT
from tests.stack_harness import StackHarness

pytestmark = pytest.mark.e2e


def test_a_client_without_the_auth_string_is_refused(stack: StackHarness) -> None:
    reads = [
        # The Secret blocks that hold connector credentials, the runs, the deployments.
        ("POST", "/block_documents/filter", {"limit": 5}),
        ("POST", "/flow_runs/filter", {"limit": 5}),
        ("GET", "/deployments/name/sync-source/sync-source", None),
    ]
    wrong = {"Authorization": "Basic " + "c3BsZW5kb3I6bm90LWl0"}  # splendor:not-it
    for method, path, body in reads:
        url = f"{stack.api_url}{path}"
        assert httpx.request(method, url, json=body, timeout=10).status_code == 401, path
        assert httpx.request(method, url, json=body, headers=wrong, timeout=10).status_code == 401, path
        allowed = httpx.request(method, url, json=body, headers=stack.api_headers, timeout=10)
        assert allowed.status_code == 200, (path, allowed.status_code)
    # Health probes stay open (a load balancer's or the stack's own readiness check).
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200


def test_the_auth_string_is_private_to_the_stack_user_and_never_printed(stack: StackHarness) -> None:
    assert stack.auth_file.stat().st_mode & 0o777 == 0o600
    assert stack.auth_file.read_text().strip() == stack.auth_string
    assert len(stack.auth_string.partition(":")[2]) >= 40
    summary = stack.summary()
    assert stack.auth_string.partition(":")[2] not in summary
    assert str(stack.auth_file) in summary


def test_the_prefect_cli_works_with_the_stack_env_and_is_refused_without_it(stack: StackHarness) -> None:
    assert "sync-source" in stack.prefect("deployment", "ls").stdout
    without = {k: v for k, v in stack.cli_env.items() if k != "PREFECT_API_AUTH_STRING"}
    refused = subprocess.run(
        [PREFECT, "deployment", "ls"], env=without, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode != 0
    assert "401" in refused.stdout + refused.stderr
    assert os.environ.get("PREFECT_API_AUTH_STRING") != stack.auth_string


def test_the_workers_reach_the_server_with_it(stack: StackHarness) -> None:
    # Each worker heartbeats through the API every poll (1 s here): recent heartbeats mean it is let in.
    recent = datetime.now(UTC) - timedelta(seconds=30)
    workers = stack.api("POST", f"/work_pools/{POOL}/workers/filter", json={})
    online = {
        w["name"]
        for w in workers
        if w["status"] == "ONLINE" and datetime.fromisoformat(w["last_heartbeat_time"]) > recent
    }
    assert {"stack-worker-1", "stack-worker-2"} <= online
    assert all(stack.worker_env(i)["PREFECT_API_AUTH_STRING"] == stack.auth_string for i in (1, 2))
