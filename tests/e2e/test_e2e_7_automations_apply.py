"""`splendor-flows automations apply`, as `make deploy` runs it, on a fresh `prefect server start` where
`prefect deploy --all` has run: the safety automations and the upload trigger always, the notification ones
only with a webhook, whose URL stays out of the block's plain fields; a second apply, and a second
`make deploy`, change no automation and no block; `--plan` writes nothing; deployments whose runs send no
heartbeats are named; a deployment the upload trigger needs and that is missing is named before any write;
a failed request never carries the server's answer.
"""

import base64
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from splendor_flows.orchestration import automations
from tests.e2e.conftest import BIN, PREFECT, REPO, UPLOAD_TRIGGER, Stack, api, running_stack

pytestmark = pytest.mark.e2e

SAFETY = [
    "splendor-crash-zombie-flow-runs",
    "splendor-resume-crashed-flow-runs",
    "splendor-fail-unanswered-oauth",
    "splendor-source-freshness",
    UPLOAD_TRIGGER,
]
NOTIFIERS = [
    "splendor-notify-sync-failed",
    "splendor-notify-ingest-failed",
    "splendor-notify-oauth-unanswered",
    "splendor-notify-stale-source",
    "splendor-notify-flow-run-failed",
    "splendor-notify-flow-run-not-resumed",
]
# A Slack-style webhook URL: whoever holds it can post to the channel.
WEBHOOK = f"http://127.0.0.1:9/services/T0/B0/canary{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server of its own (the package's one runs other tests' automations), deployed as `make deploy`
    deploys: the pool, then `prefect deploy --all`."""
    with running_stack(tmp_path_factory.mktemp("automations")) as stack:
        stack.run(PREFECT, "work-pool", "create", "splendor-local", "--type", "process")
        stack.run(PREFECT, "--no-prompt", "deploy", "--all", timeout=180)
        yield stack


def cli(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "splendor-flows"), "automations", "apply", *args],
        env=stack.env | {"COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def on_server(stack: Stack) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in api(stack, "POST", "/automations/filter", json={})}


def block(stack: Stack, ref: str, *, secrets: bool = False) -> dict[str, Any]:
    slug, _, name = ref.partition("/")
    path = f"/block_types/slug/{slug}/block_documents/name/{name}"
    found: dict[str, Any] = api(stack, "GET", path, params={"include_secrets": str(secrets).lower()})
    return found


def lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith("  ")]


def test_plan_on_a_fresh_server_says_what_apply_would_do_and_writes_nothing(server: Stack) -> None:
    done = cli(server, "--plan")

    planned = {tuple(words[:4]) for words in lines(done.stdout)}
    assert ("+", "create", "block", automations.EVENTS_BLOCK) in planned
    assert {("+", "create", "automation", name) for name in SAFETY} <= planned
    assert {("-", "skip", "automation", name) for name in NOTIFIERS} <= planned
    assert "no webhook configured (--notify-url or $SPLENDOR_NOTIFY_URL)" in done.stdout
    assert done.stdout.rstrip().endswith("Plan: 6 create, 6 skip.")
    # `prefect deploy` made no automation and no block.
    assert on_server(server) == {}
    assert (
        api(
            server,
            "POST",
            "/block_documents/filter",
            json={"block_documents": {"is_anonymous": {"eq_": False}}},
        )
        == []
    )


def test_apply_creates_the_safety_automations_and_a_second_apply_changes_nothing(server: Stack) -> None:
    first = cli(server)
    assert first.stdout.rstrip().endswith("Applied: 6 create, 6 skip.")
    # prefect.yaml gives every deployment's runs heartbeats: nothing to warn about.
    assert "warning" not in first.stderr, first.stderr
    before = on_server(server)
    assert set(SAFETY) <= set(before) and not set(NOTIFIERS) & set(before)
    events_block = block(server, automations.EVENTS_BLOCK)

    again = cli(server)

    assert again.stdout.rstrip().endswith("Applied: 6 unchanged, 6 skip.")
    after = on_server(server)
    assert {n: (a["id"], a["updated"]) for n, a in after.items()} == {
        n: (a["id"], a["updated"]) for n, a in before.items()
    }
    assert block(server, automations.EVENTS_BLOCK)["updated"] == events_block["updated"]
    assert cli(server, "--plan").stdout.rstrip().endswith("Plan: would change nothing.")


def test_the_notification_automations_come_with_a_webhook_kept_in_a_secret_field(server: Stack) -> None:
    planned = cli(server, "--plan", "--notify-url", WEBHOOK)
    assert ("+", "create", "block", automations.NOTIFY_BLOCK) in {tuple(w[:4]) for w in lines(planned.stdout)}
    assert not set(NOTIFIERS) & set(on_server(server))

    done = cli(server, "--notify-url", WEBHOOK)

    assert set(NOTIFIERS) <= set(on_server(server))
    assert WEBHOOK not in planned.stdout + planned.stderr + done.stdout + done.stderr
    # The plain fields hold a placeholder; the URL is only in the secret values, masked when read.
    plain = block(server, automations.NOTIFY_BLOCK)
    assert WEBHOOK not in json.dumps(plain)
    assert plain["data"]["url"] == "{{notify_url}}"
    assert plain["data"]["secrets"] == {"notify_url": "********"}
    # ... and the block posts to it.
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    stored = block(server, automations.NOTIFY_BLOCK, secrets=True)["data"]
    assert CustomWebhookNotificationBlock(**stored)._build_request_args("body", "subject")["url"] == WEBHOOK

    notify_block = block(server, automations.NOTIFY_BLOCK)
    again = cli(server, "--notify-url", WEBHOOK)
    assert again.stdout.rstrip().endswith("Applied: 13 unchanged.")
    assert block(server, automations.NOTIFY_BLOCK)["updated"] == notify_block["updated"]
    # Without a URL the block on the server is used as it is, and kept.
    kept = cli(server)
    assert kept.stdout.rstrip().endswith("Applied: 13 unchanged.")
    assert "kept as it is (no URL given)" in kept.stdout


def make_deploy(stack: Stack) -> subprocess.CompletedProcess[str]:
    """The Makefile's `deploy` recipe against the server (`-o`: this venv is taken as installed)."""
    stamp = REPO / ".venv" / ".installed"
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", str(stamp), "deploy"],
        cwd=REPO,
        env=stack.env | {"COLUMNS": "250", "SPLENDOR_NOTIFY_URL": WEBHOOK, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def everything_on(stack: Stack) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """Each automation and named block (copies of one name included): its id and when it last changed."""
    named = {"block_documents": {"is_anonymous": {"eq_": False}}}
    blocks = api(stack, "POST", "/block_documents/filter", json=named)
    found = api(stack, "POST", "/automations/filter", json={})
    return (
        sorted((a["name"], a["id"], a["updated"]) for a in found),
        sorted((b["name"], b["id"], b["updated"]) for b in blocks),
    )


def test_a_second_make_deploy_changes_no_automation_and_no_block(server: Stack) -> None:
    first = make_deploy(server)
    automations_before, blocks_before = everything_on(server)
    assert [name for name, _, _ in automations_before] == sorted([*SAFETY, *NOTIFIERS])
    assert [name for name, _, _ in blocks_before] == ["splendor-notify", "splendor-prefect-events"]

    second = make_deploy(server)

    assert everything_on(server) == (automations_before, blocks_before)
    assert "Applied: 13 unchanged." in second.stdout, second.stdout
    assert WEBHOOK not in first.stdout + first.stderr + second.stdout + second.stderr
    # The trigger still runs the after-upload deployment (test_e2e_2_runs sees the event start a run).
    after_upload = api(server, "GET", "/deployments/name/after-upload/after-upload")
    [action] = on_server(server)[UPLOAD_TRIGGER]["actions"]
    assert (action["type"], action["deployment_id"]) == ("run-deployment", after_upload["id"])


def test_deployments_whose_runs_send_no_heartbeats_are_named(server: Stack) -> None:
    deployment = api(server, "GET", "/deployments/name/sync-source/sync-source")
    try:
        api(server, "PATCH", f"/deployments/{deployment['id']}", json={"job_variables": {}})
        missing = cli(server, "--plan").stderr
        assert "the runs of sync-source send none" in " ".join(missing.split()), missing
        too_slow = {"env": {automations.HEARTBEAT_SETTING: "600"}}
        api(server, "PATCH", f"/deployments/{deployment['id']}", json={"job_variables": too_slow})
        slow = " ".join(cli(server, "--plan").stderr.split())
        assert "must be a whole number of seconds from 30 to 80" in slow and "sync-source (600)" in slow
    finally:
        restored = {"job_variables": deployment["job_variables"]}
        api(server, "PATCH", f"/deployments/{deployment['id']}", json=restored)
    assert "warning" not in cli(server, "--plan").stderr


# --- failures, without a Prefect server -------------------------------------------------------------------


class EchoServer:
    """A Prefect API stand-in on which everything apply reads is found empty (no block, no automation,
    no deployment but, when `deployed`, those the automations run) and every write fails with `status`
    and a body that echoes the request's headers and body, as some proxies and error pages do."""

    def __init__(self, status: int, *, deployed: bool = True) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, code: int, value: Any) -> None:
                body = json.dumps(value).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.requests.append(f"GET {self.path}")
                block_type = "/block_types/slug/" in self.path and "/block_documents/" not in self.path
                if block_type or (deployed and "/deployments/name/" in self.path):
                    self.answer(200, {"id": str(uuid.uuid4())})
                else:
                    self.answer(404, {"detail": "Not found"})

            def do_POST(self) -> None:
                outer.requests.append(f"POST {self.path}")
                sent = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if self.path.endswith("/block_schemas/filter"):
                    self.answer(200, [{"id": str(uuid.uuid4())}])
                elif self.path.endswith("/filter"):
                    self.answer(200, [])
                else:
                    self.answer(status, {"detail": "refused", "echo": dict(self.headers), "body": sent})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [500, 422, 401])
def test_a_failed_request_says_what_failed_and_its_status_never_the_answer(status: int) -> None:
    auth = f"admin:canary{uuid.uuid4().hex}"
    echo = EchoServer(status)
    try:
        with pytest.raises(automations.AutomationsError) as raised:
            automations.apply(echo.url, automations.load(), auth_string=auth)
    finally:
        echo.close()
    message = str(raised.value)
    assert echo.requests[-1] == "POST /api/block_documents/"
    assert message.startswith(
        f"creating block webhook/splendor-prefect-events: POST /block_documents/ failed with HTTP {status}"
    )
    for secret in (auth, base64.b64encode(auth.encode()).decode(), "refused"):
        assert secret not in message
    if status == 401:
        assert "PREFECT_API_AUTH_STRING" in message


def test_a_bad_webhook_url_is_refused_before_any_request() -> None:
    echo = EchoServer(500)
    bad = f"hooks.example.com/T0/canary{uuid.uuid4().hex}"
    try:
        with pytest.raises(
            ValueError, match=r"--notify-url \(or SPLENDOR_NOTIFY_URL\) must be an http"
        ) as raised:
            automations.apply(echo.url, automations.load(), notify_url=bad)
    finally:
        echo.close()
    assert echo.requests == []
    # The message names the option and what it takes, never the value (a webhook URL is a credential).
    assert "canary" not in str(raised.value)


def test_a_refused_notification_block_never_quotes_its_url() -> None:
    """The server refuses to store the webhook block and echoes the request, URL included."""
    echo = EchoServer(500)
    try:
        with pytest.raises(automations.AutomationsError) as raised:
            automations.apply(echo.url, automations.load(), notify_url=WEBHOOK)
    finally:
        echo.close()
    assert echo.requests[-1] == "POST /api/block_documents/"
    assert str(raised.value) == (
        f"creating block {automations.NOTIFY_BLOCK}: POST /block_documents/ failed with HTTP 500"
    )
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_an_automation_prefect_would_refuse_is_named_before_any_request() -> None:
    broken = automations.load()
    broken[1]["trigger"]["posture"] = "Sometimes"
    echo = EchoServer(500)
    try:
        with pytest.raises(ValueError, match="automation splendor-resume-crashed-flow-runs: field trigger"):
            automations.apply(echo.url, broken)
        with pytest.raises(ValueError, match="automation splendor-source-freshness: field actions is"):
            automations.apply(echo.url, [{"name": "splendor-source-freshness", "trigger": {}}])
        upload = [a for a in automations.load() if a["name"] == UPLOAD_TRIGGER]
        upload[0]["actions"][0]["deployment"] = "after-upload"
        with pytest.raises(
            ValueError,
            match=f"automation {UPLOAD_TRIGGER}: field actions.deployment: 'after-upload' is not "
            "<flow name>/<deployment name>",
        ):
            automations.apply(echo.url, upload)
    finally:
        echo.close()
    assert echo.requests == []


def test_a_missing_deployment_of_the_upload_trigger_is_named_before_any_write() -> None:
    echo = EchoServer(500, deployed=False)
    try:
        with pytest.raises(automations.AutomationsError) as raised:
            automations.apply(echo.url, automations.load())
        # Refused on the first answer, before any other request.
        assert echo.requests == ["GET /api/deployments/name/after-upload/after-upload"]
        planned = automations.plan(echo.url, automations.load())
        done = subprocess.run(
            [str(BIN / "splendor-flows"), "automations", "apply", "--api-url", echo.url],
            env={"PATH": str(BIN), "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        echo.close()
    message = (
        f"{UPLOAD_TRIGGER} runs the deployment after-upload/after-upload, which the Prefect server at "
        f"{echo.url} does not have: run `prefect deploy --all` (or `make deploy`) first, then apply again"
    )
    assert str(raised.value) == message
    # A plan says the same, and shows the trigger as skipped with why.
    assert planned.skipped[UPLOAD_TRIGGER] == (
        "no deployment after-upload/after-upload: run `prefect deploy --all` first"
    )
    assert message in planned.warnings
    # The command: one line, and a failing exit status.
    assert (done.returncode, done.stdout, " ".join(done.stderr.split())) == (1, "", f"error: {message}")
