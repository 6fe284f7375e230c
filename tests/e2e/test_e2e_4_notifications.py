"""The notification automations of deployments/automations.yaml, on a real `prefect server start`.

The automations are applied the way `make stack` and `make deploy` apply them (orchestration/automations.py,
by name, with the notification webhook pointed at a receiver this test runs on loopback), with their windows
shortened.
Two pipelines run as an admin runs them, with the `splendor-flows` CLI: a Stripe source whose first
sync run fails (its error quoting the credential and the token) and whose ingestion then fails, and an
OAuth source nobody approves. A third runs as a deployment run on a worker (tagged `splendor`, like
every deployment): a connect-source allowed one sync attempt, whose run fails quoting the credential
and the token, so the flow run fails. The receiver must get one notification per automation (sync
failed, ingest failed, OAuth unanswered, stale source: the first source's successful sync is not
followed by another within the freshness window, and the failed flow run), each naming the source or
the flow run, the run and the error, with no secret. The CLI runs carry no tag: no flow-run
notification for them.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings

from splendor_flows.orchestration import automations
from tests.e2e.conftest import BIN, TOKEN, Proc, Stack, api, deployment_id

pytestmark = pytest.mark.e2e

NOTIFIERS = [
    "splendor-notify-sync-failed",
    "splendor-notify-ingest-failed",
    "splendor-notify-oauth-unanswered",
    "splendor-source-freshness",
    "splendor-notify-stale-source",
    "splendor-notify-flow-run-failed",
    "splendor-notify-flow-run-not-resumed",
]
# Prefect's shortest window for a proactive trigger.
OAUTH_WINDOW = 10.0
FRESHNESS_WINDOW = 10.0
CREDENTIAL = f"sk_test_canary{uuid.uuid4().hex[:12]}"
SECRET_BLOCK = "notify-e2e-stripe-credentials"


class Receiver:
    """A webhook endpoint: keeps every JSON body posted to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, subjects: list[str], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(any(s in m["subject"] for m in self.received) for s in subjects):
                break
            time.sleep(0.3)
        return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def short_windows() -> list[dict[str, Any]]:
    chosen = [a for a in automations.load() if a["name"] in NOTIFIERS]
    return automations.with_windows(
        chosen,
        {"splendor-notify-oauth-unanswered": OAUTH_WINDOW, "splendor-source-freshness": FRESHNESS_WINDOW},
    )


@pytest.fixture
def notifying(stack: Stack, receiver: Receiver) -> Iterator[automations.Applied]:
    """The notification automations on the server, windows shortened; removed afterwards so the
    other e2e tests' sources are not reported stale."""
    try:
        yield automations.apply(stack.api_url, short_windows(), notify_url=receiver.url)
    finally:
        remove(stack, NOTIFIERS)


def remove(stack: Stack, names: list[str]) -> None:
    found = api(stack, "POST", "/automations/filter", json={"automations": {"name": {"any_": names}}})
    for automation in found:
        api(stack, "DELETE", f"/automations/{automation['id']}")


def source_events(stack: Stack, source_key: str, until: str, timeout: float = 20) -> list[dict[str, Any]]:
    body = {
        "filter": {"resource": {"id": [f"splendor.source.acme.{source_key}"]}, "order": "ASC"},
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    while True:
        events: list[dict[str, Any]] = api(stack, "POST", "/events/filter", json=body)["events"]
        if any(e["event"] == until for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def action_outcomes(stack: Stack) -> list[Any]:
    """What the automations' actions did (a failed action says why only here)."""
    body = {"filter": {"event": {"prefix": ["prefect.automation.action"]}, "order": "ASC"}, "limit": 50}
    events = api(stack, "POST", "/events/filter", json=body)["events"]
    return [(e["event"], e["resource"].get("prefect.resource.name"), e["payload"]) for e in events]


def write_spec(path: Path, **values: Any) -> Path:
    common = {
        "dataset_id": "notify",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
    }
    path.write_text(yaml.safe_dump(common | values))
    return path


def test_each_automation_notifies_with_source_run_and_error_and_no_secret(
    stack: Stack, live_worker: Proc, receiver: Receiver, notifying: automations.Applied, tmp_path: Path
) -> None:
    assert sorted(notifying.ids) == sorted(NOTIFIERS) and not notifying.skipped
    # Applying again updates in place: no second copy of any automation.
    again = automations.apply(stack.api_url, short_windows())
    assert again.ids == notifying.ids
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        from prefect.blocks.system import Secret

        Secret(value={"api_key": CREDENTIAL, "account_id": "acct_notify", "start_date": "2026-01-01"}).save(
            SECRET_BLOCK, overwrite=True
        )

    suffix = uuid.uuid4().hex[:6]
    stripe, oauth, deployed = f"notify-stripe-{suffix}", f"notify-oauth-{suffix}", f"notify-deployed-{suffix}"
    emu = stack.emulator
    quoting = f"401 from api.stripe.com: key {CREDENTIAL} rejected (caller {TOKEN})"
    # A deployment run that gives up after one failed sync: the flow run fails (its message quotes the
    # run's error), started first so that it runs while the CLI pipelines do.
    emu.add_fault(kind="run_fail", count=1, source_key=deployed, error_message=quoting)
    deployed_spec = {
        "provider_key": "stripe",
        "source_key": deployed,
        "dataset_id": "notify",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "streams": ["charges"],
        "credentials_secret": SECRET_BLOCK,
    }
    failing_run = api(
        stack,
        "POST",
        f"/deployments/{deployment_id(stack, 'connect-source')}/create_flow_run",
        json={"parameters": {"spec": deployed_spec, "max_sync_attempts": 1}},
    )
    emu.add_fault(kind="run_fail", count=1, source_key=stripe, error_message=quoting)
    emu.add_fault(kind="ingest_fail", count=1, source_key=stripe)
    stripe_spec = write_spec(
        tmp_path / "stripe.yaml",
        provider_key="stripe",
        source_key=stripe,
        streams=["charges"],
        credentials_secret=SECRET_BLOCK,
    )
    oauth_spec = write_spec(
        tmp_path / "oauth.yaml", provider_key="salesforce", source_key=oauth, oauth={"timeout_seconds": 30}
    )
    cli = [str(BIN / "splendor-flows"), "connect"]
    waiting = stack.procs.start(f"oauth-{suffix}", [*cli, str(oauth_spec)], stack.env)
    try:
        # Attempt 1 fails (sync failed), attempt 2 succeeds, its ingestion fails: the run fails.
        failed = stack.run(*cli, str(stripe_spec), timeout=180, check=False)
        assert failed.returncode != 0 and "ingest" in failed.stdout + failed.stderr, failed.stdout
        messages = receiver.wait_for(
            ["sync failed", "ingest failed", "OAuth consent waiting", "source stale", "flow run failed"],
            timeout=90,
        )
    finally:
        waiting.stop()

    by_subject = {m["subject"]: m["body"] for m in messages}
    # The server records events a moment after its automations have seen them.
    runs = source_events(stack, stripe, until="splendor.source.stale")
    started = [e["payload"] for e in runs if e["event"] == "splendor.sync.started"]
    stale = [e for e in runs if e["event"] == "splendor.source.stale"]
    assert len(started) == 2 and len(stale) == 1, ([e["event"] for e in runs], action_outcomes(stack))
    first_run, second_run = started[0]["run_id"], started[1]["run_id"]
    flow_run = started[0]["flow_run_id"]

    sync_failed = by_subject[f"Splendor sync failed: {stripe}"]
    assert f"acme/{stripe} (id {started[0]['source_id']})" in sync_failed
    assert f"Splendor run: {first_run} (failed)" in sync_failed and flow_run in sync_failed
    assert "Error: 401 from api.stripe.com: key *** rejected (caller ***)" in sync_failed

    ingest_failed = by_subject[f"Splendor ingest failed: {stripe}"]
    assert f"acme/{stripe}" in ingest_failed and f"Splendor run: {second_run};" in ingest_failed
    assert flow_run in ingest_failed
    assert "Error: ing_" in ingest_failed and "failed Ingestion failed while parsing" in ingest_failed

    unanswered = by_subject[f"Splendor OAuth consent waiting: {oauth}"]
    assert f"acme/{oauth}" in unanswered and "Prefect flow run: " in unanswered
    assert f"Error: nobody approved the consent within {OAUTH_WINDOW:.0f} s" in unanswered
    assert "(the run gives up after 30 s)" in unanswered

    stale_body = by_subject[f"Splendor source stale: {stripe}"]
    assert f"acme/{stripe}" in stale_body and f"for {FRESHNESS_WINDOW:.0f} s" in stale_body
    assert f"Last successful Splendor run: {second_run} at " in stale_body and flow_run in stale_body
    assert "Error: no successful sync within the freshness window" in stale_body
    assert stale[0]["payload"]["last_run_id"] == second_run
    assert stale[0]["resource"]["splendor.source_key"] == stripe

    # The deployment run: its Splendor run's failure, then its flow run's, each told apart by subject.
    run = api(stack, "GET", f"/flow_runs/{failing_run['id']}")
    assert run["state"]["type"] == "FAILED", run["state"]
    assert (
        "Error: 401 from api.stripe.com: key *** rejected (caller ***)"
        in by_subject[f"Splendor sync failed: {deployed}"]
    )
    flow_failed = by_subject[f"Splendor flow run failed: connect-source ({run['name']})"]
    assert flow_failed.splitlines()[:2] == [
        f"Flow run {run['name']} of deployment connect-source/connect-source ended Failed (run count 1).",
        f"Prefect flow run: {run['id']}",
    ], flow_failed
    error = flow_failed.splitlines()[2]
    assert error.startswith(f"Error: StepError: [sync] source '{deployed}': 1 sync attempt(s) failed"), error
    assert "key *** rejected (caller ***)" in error and f"sync_id={run['id']}" in error, error
    # Not the CLI runs (the Stripe one failed, the OAuth one was stopped): they carry no `splendor` tag.
    cli_runs = {flow_run, unanswered.split("Prefect flow run: ")[1].split(" ")[0]}
    about_runs = [b for m, b in by_subject.items() if m.startswith("Splendor flow run")]
    assert not [b for b in about_runs if any(r in b for r in cli_runs)], about_runs

    # One notification per automation and source: nothing repeated, nothing else.
    assert sorted(by_subject) == sorted(m["subject"] for m in messages)
    blob = json.dumps(messages)
    assert CREDENTIAL not in blob and TOKEN not in blob


def test_a_missing_notification_block_skips_its_automations_and_says_so(stack: Stack) -> None:
    chosen = [a for a in automations.load() if a["name"] in NOTIFIERS]
    renamed = json.loads(
        json.dumps(chosen).replace(automations.NOTIFY_BLOCK, "custom-webhook/nobody-made-this")
    )
    for automation in renamed:
        automation["name"] += "-unmade"
    try:
        applied = automations.apply(stack.api_url, renamed)
        assert sorted(applied.skipped) == sorted(
            f"{n}-unmade" for n in NOTIFIERS if n != "splendor-source-freshness"
        )
        assert set(applied.skipped.values()) == {"no block custom-webhook/nobody-made-this"}
        assert list(applied.ids) == ["splendor-source-freshness-unmade"]
    finally:
        remove(stack, [a["name"] for a in renamed])
