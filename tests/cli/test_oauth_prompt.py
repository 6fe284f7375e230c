"""`splendor-flows connect` of an OAuth provider asks for the secret_id: hidden on a terminal, one line
of standard input with --secret-id-stdin. Driven as an admin would: the command runs on a
pseudo-terminal (or pipes), the consent link it prints is opened and approved on the emulator's consent
page, and the secret_id from the redirect is typed back. The secret_id must never show on the terminal,
in the run's logs or in its input afterwards."""

import json
import os
import pty
import re
import select
import subprocess
import termios
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL

from splendor_emulator import Emulator
from tests.cli.test_terminal_output import CLI, cli_env
from tests.flows.conftest import mutating_counts
from tests.prefect_events import read_events

CONSENT_LINK = re.compile(r"https?://\S+/_emulator/oauth/consent/[\w-]+")
ANSI = re.compile(r"\x1b\[[0-9;?]*[@-~]")


def write_spec(tmp_path: Path, source_key: str, timeout_seconds: int = 120) -> Path:
    path = tmp_path / f"{source_key}.yaml"
    spec = {
        "provider_key": "salesforce",
        "source_key": source_key,
        "dataset_id": "crm",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
        "oauth": {"timeout_seconds": timeout_seconds},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def approve(consent_url: str) -> str:
    """What the admin does in the browser: approve, and read the secret_id off the redirect."""
    response = httpx.get(
        consent_url,
        params={"approve": "true"},
        headers={"Accept": "application/json"},
        follow_redirects=True,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["secret_id"])


class Terminal:
    """A command on a pseudo-terminal that a test types into."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            argv,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        os.close(follower)
        self.output = ""

    def _read(self, seconds: float) -> bool:
        ready, _, _ = select.select([self.leader], [], [], seconds)
        if not ready:
            return True
        try:
            chunk = os.read(self.leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """Read until `pattern` shows (in the text without colours), and return its match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, ANSI.sub("", self.output))
            if match:
                return match
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{pattern!r} never showed; the terminal shows:\n{self.output}")

    def type(self, text: str) -> None:
        os.write(self.leader, text.encode())

    def echoes(self) -> bool:
        return bool(termios.tcgetattr(self.leader)[3] & termios.ECHO)

    def finish(self, timeout: float = 180) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.2) or self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"still running after {timeout} s:\n{self.output}")
        os.close(self.leader)
        return self.process.wait(10)


async def run_of_consent(consent_url: str) -> UUID:
    """The flow run that published this consent link."""
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["splendor-oauth-consent"]))
        )
    [found] = [a for a in artifacts if consent_url in str(a.data)]
    assert found.flow_run_id is not None
    return found.flow_run_id


async def assert_left_nowhere(flow_run_id: UUID, secret_id: str) -> dict[str, Any]:
    """The run's input, logs and events hold no trace of the secret_id; returns the run's input keys."""
    async with get_client() as client:
        inputs = await client.filter_flow_run_input(flow_run_id, key_prefix="", limit=100, exclude_keys=set())
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
    assert inputs, "the run holds no input at all: the check below would prove nothing"
    assert not [i.key for i in inputs if secret_id in i.value]
    assert logs and not [log.message for log in logs if secret_id in log.message]
    events = await read_events(
        str(PREFECT_API_URL.value()), resource_prefix=f"prefect.flow-run.{flow_run_id}"
    )
    assert events and secret_id not in json.dumps(events)
    return {i.key: i.value for i in inputs}


async def test_the_secret_id_is_asked_hidden_on_a_terminal_and_completes_the_oauth(
    emulator: Emulator, source_key: str, tmp_path: Path
) -> None:
    completions = mutating_counts(emulator)["oauth"]
    terminal = Terminal([CLI, "connect", str(write_spec(tmp_path, source_key))], cli_env(emulator))
    consent_url = terminal.expect(CONSENT_LINK.pattern).group(0)
    terminal.expect(r"secret_id: $")
    assert not terminal.echoes(), "the terminal echoes what is typed at the secret_id prompt"

    # An empty answer is asked again, with what is wrong; nothing reaches the run.
    terminal.type("\n")
    terminal.expect(r"nothing was pasted.*\n.*secret_id: $")

    secret_id = approve(consent_url)
    terminal.type(f"{secret_id}\n")
    terminal.expect("secret_id received")
    assert terminal.echoes(), "the terminal's echo was not given back"
    assert terminal.finish() == 0, terminal.output
    assert "succeeded" in terminal.output
    assert secret_id not in terminal.output
    assert mutating_counts(emulator)["oauth"] == completions + 1
    await assert_left_nowhere(await run_of_consent(consent_url), secret_id)


async def test_the_secret_id_is_read_from_standard_input_when_asked_to(
    emulator: Emulator, source_key: str, tmp_path: Path
) -> None:
    completions = mutating_counts(emulator)["oauth"]
    process = subprocess.Popen(
        [CLI, "connect", str(write_spec(tmp_path, source_key)), "--secret-id-stdin"],
        env=cli_env(emulator) | {"COLUMNS": "200"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdin is not None and process.stdout is not None
    output = b""
    deadline = time.monotonic() + 120
    while not CONSENT_LINK.search(output.decode(errors="replace")):
        assert time.monotonic() < deadline and process.poll() is None, output.decode(errors="replace")
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            output += os.read(process.stdout.fileno(), 65536)
    match = CONSENT_LINK.search(output.decode(errors="replace"))
    assert match
    consent_url = match.group(0)
    secret_id = approve(consent_url)
    rest, _ = process.communicate(input=f"{secret_id}\n".encode(), timeout=180)
    text = (output + rest).decode(errors="replace")
    assert process.returncode == 0, text
    assert "secret_id received" in text and secret_id not in text
    assert "\x1b[" not in text  # a pipe gets plain text
    assert mutating_counts(emulator)["oauth"] == completions + 1
    await assert_left_nowhere(await run_of_consent(consent_url), secret_id)


async def test_nobody_answering_the_prompt_ends_with_the_timeout_line_and_gives_the_echo_back(
    emulator: Emulator, source_key: str, tmp_path: Path
) -> None:
    completions = mutating_counts(emulator)["oauth"]
    terminal = Terminal(
        [CLI, "connect", str(write_spec(tmp_path, source_key, timeout_seconds=10))], cli_env(emulator)
    )
    terminal.expect(r"secret_id: $")
    assert not terminal.echoes()
    terminal.expect(r"error: .*nobody approved the OAuth consent within 10 s", timeout=60)
    assert terminal.echoes(), "the terminal was left without echo"
    assert terminal.finish() == 1
    assert mutating_counts(emulator)["oauth"] == completions


def test_two_ways_of_giving_the_secret_id_are_refused_before_anything_runs(
    emulator: Emulator, source_key: str, tmp_path: Path
) -> None:
    before = emulator.counts()
    result = subprocess.run(
        [
            CLI,
            "connect",
            str(write_spec(tmp_path, source_key)),
            "--secret-id-stdin",
            "--oauth-secret-block",
            "b",
        ],
        env=cli_env(emulator) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --secret-id-stdin and --oauth-secret-block both give the OAuth secret_id: pass one of them"
    ]
    assert emulator.counts() == before
