"""deployments/serve.py registers the same deployments as prefect.yaml and runs them without a work pool."""

import contextlib
import sys
import time
import uuid

import httpx
import pytest

from .conftest import UPLOAD_TRIGGER, Proc, Stack, api, apply_upload_trigger, deployment_id, wait_for_runs
from .test_e2e_2_runs import CATALOG, emit_raw, seconds

pytestmark = pytest.mark.e2e


def test_served_after_upload_runs_on_event(deployed: Stack, worker: Proc) -> None:
    worker.stop()
    before = api(deployed, "GET", f"/deployments/{deployment_id(deployed, 'after-upload')}")
    refused = deployed.run(
        sys.executable, "-m", "splendor_flows.deployments.serve", "--only", "after-upload", check=False
    )
    assert refused.returncode == 2 and "--replace" in refused.stderr

    served = deployed.procs.start(
        "serve",
        [
            sys.executable,
            "-m",
            "splendor_flows.deployments.serve",
            "--only",
            "after-upload",
            "--limit",
            "2",
            "--replace",
        ],
        deployed.env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPStatusError):
                current = api(deployed, "GET", f"/deployments/{deployment_id(deployed, 'after-upload')}")
                if current["id"] != before["id"]:
                    break
            assert served.popen.poll() is None, served.tail()
            time.sleep(0.3)
        else:
            raise AssertionError(f"serve did not register after-upload:\n{served.tail()}")
        # Same limits as `prefect deploy` made.
        assert current["global_concurrency_limit"]["limit"] == before["global_concurrency_limit"]["limit"]
        assert current["concurrency_options"] == before["concurrency_options"]
        # The served deployment is a new one: applying the automations again points the upload trigger
        # at it (docs/deployments.md, `make serve`), in place.
        [trigger] = api(deployed, "POST", "/automations/filter", json={})
        apply_upload_trigger(deployed)
        automations = api(deployed, "POST", "/automations/filter", json={})
        assert [(a["name"], a["id"]) for a in automations] == [(UPLOAD_TRIGGER, trigger["id"])]
        assert automations[0]["actions"][0]["deployment_id"] == current["id"]
        assert automations[0]["actions"][0]["parameters"] == {
            "source_key": "{{ event.resource['splendor.source_key'] }}",
            "tenant": "{{ event.resource.get('splendor.tenant') }}",
            "upload_session_id": "{{ event.payload.get('upload_session_id') }}",
            "key": "{{ event.payload.get('key') }}",
            "event_id": "{{ event.id | string }}",
        }

        event_id = str(uuid.uuid4())
        emitted = time.time()
        emit_raw(deployed, event_id, CATALOG, {"key": "drops/served.jsonl"})
        [run] = wait_for_runs(deployed, "after-upload", lambda r: r["parameters"].get("event_id") == event_id)
        assert run["state"]["type"] == "COMPLETED", (run["state"], served.tail())
        print(f"served: event -> after-upload completed in {seconds(run['end_time']) - emitted:.1f} s")
    finally:
        served.stop()
