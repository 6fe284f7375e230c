"""Waits for a person across a crash and a Retry, on a real `prefect server start` with a process worker.

A deployment run that waits for an admin suspends; the answer (an OAuth secret_id, a classification
review) is stored on the server as the run's resume input. Prefect resets a run's pause keys when the
run leaves a terminal state, and a pause that fires again deletes its stored input. Each test here kills
the worker (and the flow-run process under it) at a chosen point after the answer was read, reschedules
the run as the crash automation does (or presses Retry as an admin does), and checks that the next
attempt uses the answer already given: no second question, the answer applied exactly once, and the
OAuth secret_id gone from the run's input once Splendor has it.

The crash points are made with the emulator's faults on the call that follows the read: `unavailable`
(never processed: the worker dies before Splendor completes anything) and `latency` (processed after a
delay: the worker dies, then Splendor completes what it sent).
"""

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from stack.processes import descendants
from tests.prefect_events import read_events

from .conftest import PREFECT, Proc, Stack, api, deployment_id, running_stack, start_worker

pytestmark = pytest.mark.e2e

OAUTH_COMPLETE = "/v1/admin/airbyte-sources/{source_id}/oauth/complete"
UPDATE_SOURCE = "/v1/admin/sources/{source_id}"
SECRET_BLOCK = "waits-stripe-credentials"
CONSENT_ARTIFACT = "splendor-oauth-consent"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Workers:
    """The stack's one process worker: started on demand, killed with its flow-run processes."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.current: Proc | None = None
        self.started = 0

    def ensure(self) -> None:
        if self.current is None or self.current.popen.poll() is not None:
            self.started += 1
            self.current = start_worker(self.stack, f"waits-worker-{self.started}")

    def kill(self) -> None:
        """SIGKILL the worker and everything under it at once: the machine is gone."""
        assert self.current is not None
        victims = [self.current.popen.pid] + [pid for pid, _ in descendants(self.current.popen.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.current.popen.wait(10)
        self.current = None


@pytest.fixture(scope="module")
def waits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Workers]]:
    """A stack of its own: its worker is killed on purpose, which no other module's runs may share."""
    with running_stack(tmp_path_factory.mktemp("waits")) as stack:
        # The Splendor client keeps retrying a refused call long enough for the kill to land mid-call.
        stack.env |= {"SPLENDOR_MAX_ATTEMPTS": "100", "SPLENDOR_MAX_RETRY_SECONDS": "120"}
        stack.run(PREFECT, "work-pool", "create", "splendor-local", "--type", "process", "--overwrite")
        stack.run(PREFECT, "--no-prompt", "deploy", "--name", "connect-source", timeout=120)
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            Secret(
                value={
                    "api_key": "sk_test_waits000000000",
                    "account_id": "acct_w",
                    "start_date": "2026-01-01",
                }
            ).save(SECRET_BLOCK, overwrite=True)
        workers = Workers(stack)
        try:
            yield stack, workers
        finally:
            if workers.current is not None:
                workers.current.stop()


def spec(source_key: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "provider_key": "salesforce",
        "source_key": source_key,
        "dataset_id": "crm",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "oauth": {"timeout_seconds": 600},
    }
    return values | overrides


def stripe_review_spec(source_key: str) -> dict[str, Any]:
    return spec(
        source_key,
        provider_key="stripe",
        dataset_id="payments",
        streams=["charges", "customers"],
        credentials_secret=SECRET_BLOCK,
        classification="review",
        classification_timeout_seconds=600,
        oauth={"timeout_seconds": 600},
    )


def start_run(stack: Stack, parameters: dict[str, Any]) -> str:
    path = f"/deployments/{deployment_id(stack, 'connect-source')}/create_flow_run"
    return str(api(stack, "POST", path, json={"parameters": {**parameters, "sync": False}})["id"])


def read_run(stack: Stack, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api(stack, "GET", f"/flow_runs/{run_id}")
    return run


def wait_state(stack: Stack, run_id: str, done: Any, what: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run = read_run(stack, run_id)
    while not done(run):
        assert time.monotonic() < deadline, (
            f"run never {what}: {run['state']['name']}, states {state_names(stack, run_id)}"
        )
        time.sleep(0.3)
        run = read_run(stack, run_id)
    return run


def suspended(stack: Stack, run_id: str) -> dict[str, Any]:
    return wait_state(stack, run_id, lambda r: r["state"]["name"] == "Suspended", "suspended")


def finished(stack: Stack, run_id: str) -> dict[str, Any]:
    """The run once final; called only right after the test put it back in a state that is not."""
    return wait_state(stack, run_id, lambda r: r["state"]["type"] in FINAL, "finished")


def state_names(stack: Stack, run_id: str) -> list[str]:
    states = api(stack, "GET", "/flow_run_states/", params={"flow_run_id": run_id})
    return [s["name"] for s in sorted(states, key=lambda s: s["timestamp"])]


def run_inputs(stack: Stack, run_id: str) -> dict[str, str]:
    body = {"prefix": "", "limit": 100, "exclude_keys": []}
    return {i["key"]: i["value"] for i in api(stack, "POST", f"/flow_runs/{run_id}/input/filter", json=body)}


def run_logs(stack: Stack, run_id: str) -> list[str]:
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    return [log["message"] for log in api(stack, "POST", "/logs/filter", json=body)]


def artifacts(stack: Stack, run_id: str, key: str) -> list[dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
    found: list[dict[str, Any]] = api(stack, "POST", "/artifacts/filter", json=body)
    return found


def reschedule_after_crash(stack: Stack, run_id: str) -> None:
    """What the zombie automation and the resume automation do to a run whose worker died."""
    crashed = {
        "type": "CRASHED",
        "name": "Crashed",
        "message": "Flow run marked as crashed due to missing heartbeats.",
    }
    api(stack, "POST", f"/flow_runs/{run_id}/set_state", json={"state": crashed, "force": True})
    retry = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Rescheduled after missing heartbeats"}
    result = api(stack, "POST", f"/flow_runs/{run_id}/set_state", json={"state": retry})
    assert result["status"] == "ACCEPT", result


def ui_retry(stack: Stack, run_id: str) -> None:
    retry = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}
    result = api(stack, "POST", f"/flow_runs/{run_id}/set_state", json={"state": retry})
    assert result["status"] == "ACCEPT", result


def resume(stack: Stack, run_id: str, run_input: dict[str, Any]) -> None:
    result = api(stack, "POST", f"/flow_runs/{run_id}/resume", json={"run_input": run_input})
    assert result["status"] == "ACCEPT", result


def approve_consent(stack: Stack, run_id: str) -> str:
    """The admin opens the run's consent link, approves, and reads the secret_id off the redirect."""
    [link] = artifacts(stack, run_id, CONSENT_ARTIFACT)
    url = re.search(r"\((https?://[^)]+)\)", str(link["data"]))  # a markdown link
    assert url, link["data"]
    response = httpx.get(
        url.group(1),
        params={"approve": "true"},
        headers={"Accept": "application/json"},
        follow_redirects=True,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["secret_id"])


def source_of(stack: Stack, source_key: str) -> dict[str, Any]:
    [found] = [s for s in stack.emulator.sources("acme") if s["source_key"] == source_key]
    return found


def calls(stack: Stack, route: str, source_id: int, *, succeeded: bool) -> int:
    """Mutating calls of `route` on the source the emulator logged (answered 2xx, or any)."""
    return len(
        [
            m
            for m in stack.emulator.mutations()
            if m["route"] == route
            and str(m["path_params"].get("source_id")) == str(source_id)
            and (not succeeded or (m["status"] is not None and 200 <= m["status"] < 300))
        ]
    )


def kill_on_first_call(stack: Stack, workers: Workers, method: str, route: str) -> None:
    """Wait until the worker's flow run sends `method route`, then kill the worker at once."""
    key = f"{method} {route}"
    before = stack.emulator.counts().get(key, 0)
    deadline = time.monotonic() + 120
    while stack.emulator.counts().get(key, 0) == before:
        assert time.monotonic() < deadline, f"the resumed run never called {key}"
        time.sleep(0.05)
    workers.kill()


def assert_secret_nowhere(stack: Stack, run_id: str, secret_id: str) -> None:
    inputs = run_inputs(stack, run_id)
    assert inputs, "the run holds no input at all: the check below would prove nothing"
    assert not [k for k, v in inputs.items() if secret_id in v], inputs.keys()
    assert not [m for m in run_logs(stack, run_id) if secret_id in m]
    events = asyncio.run(read_events(stack.api_url))  # every page: all the server recorded
    assert events and secret_id not in json.dumps(events)


def test_oauth_answer_survives_a_crash_before_splendor_completes_it(waits: tuple[Stack, Workers]) -> None:
    stack, workers = waits
    workers.ensure()
    key = "waits-oauth-before"
    run_id = start_run(stack, {"spec": spec(key)})
    suspended(stack, run_id)
    source_id = source_of(stack, key)["source_id"]
    secret_id = approve_consent(stack, run_id)

    # Splendor refuses the completion (503, never processed) while the worker is killed.
    stack.emulator.add_fault(route=f"POST {OAUTH_COMPLETE}", kind="unavailable", retry_after="1")
    try:
        resume(stack, run_id, {"secret_id": secret_id})
        kill_on_first_call(stack, workers, "POST", OAUTH_COMPLETE)
    finally:
        stack.emulator.clear_faults()
    assert source_of(stack, key)["airbyte"]["credential_status"] == "pending_oauth"
    assert calls(stack, OAUTH_COMPLETE, source_id, succeeded=True) == 0
    # The dead attempt had read the answer; it is still on the run, and that is all the next one has.
    assert [v for v in run_inputs(stack, run_id).values() if secret_id in v]

    reschedule_after_crash(stack, run_id)
    workers.ensure()
    run = finished(stack, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert source_of(stack, key)["airbyte"]["credential_status"] == "ready"
    assert calls(stack, OAUTH_COMPLETE, source_id, succeeded=True) == 1
    # Not asked again: one suspension, one consent link, one provision.
    assert state_names(stack, run_id).count("Suspended") == 1
    assert len(artifacts(stack, run_id, CONSENT_ARTIFACT)) == 1
    assert any("secret_id this run's resume form holds" in m for m in run_logs(stack, run_id))
    assert_secret_nowhere(stack, run_id, secret_id)


def test_oauth_answer_is_deleted_after_a_crash_right_after_splendor_completed_it(
    waits: tuple[Stack, Workers],
) -> None:
    stack, workers = waits
    workers.ensure()
    key = "waits-oauth-after"
    run_id = start_run(stack, {"spec": spec(key)})
    suspended(stack, run_id)
    source_id = source_of(stack, key)["source_id"]
    secret_id = approve_consent(stack, run_id)

    # Splendor takes the completion, answers late, and completes it after the worker is gone.
    stack.emulator.add_fault(route=f"POST {OAUTH_COMPLETE}", kind="latency", seconds=2, count=1)
    resume(stack, run_id, {"secret_id": secret_id})
    kill_on_first_call(stack, workers, "POST", OAUTH_COMPLETE)
    deadline = time.monotonic() + 30
    while source_of(stack, key)["airbyte"]["credential_status"] != "ready":
        assert time.monotonic() < deadline, "Splendor never completed the OAuth the killed run sent"
        time.sleep(0.2)
    # The window this test is about: completed on Splendor, still in the run's input.
    assert [v for v in run_inputs(stack, run_id).values() if secret_id in v]

    reschedule_after_crash(stack, run_id)
    workers.ensure()
    run = finished(stack, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert calls(stack, OAUTH_COMPLETE, source_id, succeeded=True) == 1
    assert state_names(stack, run_id).count("Suspended") == 1
    assert len(artifacts(stack, run_id, CONSENT_ARTIFACT)) == 1
    assert_secret_nowhere(stack, run_id, secret_id)


def test_a_retry_of_a_rejected_classification_stays_rejected(waits: tuple[Stack, Workers]) -> None:
    stack, workers = waits
    workers.ensure()
    key = "waits-reject"
    run_id = start_run(stack, {"spec": stripe_review_spec(key)})
    suspended(stack, run_id)
    source_id = source_of(stack, key)["source_id"]
    resume(stack, run_id, {"decision": "reject", "comment": "names are private"})
    failed = finished(stack, run_id)
    assert failed["state"]["type"] == "FAILED", failed["state"]
    assert "rejected the proposed classification (names are private)" in failed["state"]["message"]

    ui_retry(stack, run_id)
    again = finished(stack, run_id)
    # The same answer, read again: the same rejection, no second question, nothing applied.
    assert again["state"]["type"] == "FAILED", again["state"]
    assert "rejected the proposed classification (names are private)" in again["state"]["message"]
    assert state_names(stack, run_id).count("Suspended") == 1
    assert calls(stack, UPDATE_SOURCE, source_id, succeeded=False) == 0
    assert any("answered in this run's resume form already (reject)" in m for m in run_logs(stack, run_id))
    # The answer stays on the run as the record of the decision.
    assert [v for v in run_inputs(stack, run_id).values() if "names are private" in v]


def test_an_approved_classification_survives_a_crash_before_it_is_applied(
    waits: tuple[Stack, Workers],
) -> None:
    stack, workers = waits
    workers.ensure()
    key = "waits-approve"
    run_id = start_run(stack, {"spec": stripe_review_spec(key)})
    suspended(stack, run_id)
    source_id = source_of(stack, key)["source_id"]
    edited = {"decision": "approve", "text_fields": ["description"], "vocabulary_fields": ["currency"]}

    stack.emulator.add_fault(route=f"PUT {UPDATE_SOURCE}", kind="unavailable", retry_after="1")
    try:
        resume(stack, run_id, edited)
        kill_on_first_call(stack, workers, "PUT", UPDATE_SOURCE)
    finally:
        stack.emulator.clear_faults()
    assert calls(stack, UPDATE_SOURCE, source_id, succeeded=True) == 0

    reschedule_after_crash(stack, run_id)
    workers.ensure()
    run = finished(stack, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert state_names(stack, run_id).count("Suspended") == 1
    assert calls(stack, UPDATE_SOURCE, source_id, succeeded=True) == 1
    source = source_of(stack, key)
    text = sorted(f["field"] for f in (source.get("search_config") or {}).get("text_fields", []))
    vocabulary = sorted(
        f["field"] for f in (source.get("semantic_config") or {}).get("vocabulary", {}).get("fields", [])
    )
    assert (text, vocabulary) == (["description"], ["currency"])  # the admin's edit, not the proposal
