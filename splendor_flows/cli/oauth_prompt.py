"""Asking for an OAuth secret_id while `splendor-flows connect` waits for consent.

The run pauses as it does without a terminal, so its resume form in the Prefect UI still works. Beside
it, this asks the person who started the command for the secret_id the provider's page shows after
approval, and answers the run's resume form with it (`human_waits.oauth.prompting_for_secret_id`). The flow
reads it from there and deletes it: it is never echoed, printed, logged or kept anywhere else.

- On a terminal the input is hidden (echo off, as getpass does), and asked again when it is empty or
  too long.
- With `--secret-id-stdin`, one line is read from standard input (scripts, CI: no terminal needed).

Either stops asking when the wait ends another way (answered in the UI, timed out), and gives the
terminal its echo back before anything else is printed.
"""

import asyncio
import contextlib
import os
import select
import sys
import termios
import threading
from collections.abc import Iterator
from typing import Literal

from splendor_flows.cli.console import cell, errors, fail, warn

Mode = Literal["terminal", "stdin"]
POLL_SECONDS = 0.2


def _read_line(fd: int, hidden_prompt: str | None, stop: threading.Event) -> str | None:
    """One line from `fd`, without its end; None at end of input or once `stop` is set. With
    `hidden_prompt`, `fd` is a terminal: its echo is off while reading, and the prompt is shown only
    once it is, so nothing typed early can show."""
    saved = termios.tcgetattr(fd) if hidden_prompt is not None else None
    if saved is not None:
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~termios.ECHO  # local modes: no echo; line editing and Ctrl-C stay
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        sys.stderr.write(hidden_prompt or "")
        sys.stderr.flush()
    try:
        data = b""
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            data += chunk
            if b"\n" in data:
                return data.split(b"\n", 1)[0].decode(errors="replace").rstrip("\r")
        return None
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            # The Enter the admin pressed was not echoed either.
            sys.stderr.write("\n")
            sys.stderr.flush()


async def _read_line_beside_the_run(fd: int, hidden_prompt: str | None) -> str | None:
    stop = threading.Event()
    reading = asyncio.get_running_loop().run_in_executor(None, _read_line, fd, hidden_prompt, stop)
    try:
        return await asyncio.shield(reading)
    except asyncio.CancelledError:
        # The wait ended another way: stop reading, and restore the echo before the run goes on.
        stop.set()
        await asyncio.wait([reading])
        raise


def problem_with(secret_id: str) -> str | None:
    """What is wrong with a pasted secret_id (never quoting it), or None."""
    from splendor_flows.human_waits.oauth import SECRET_ID_MAX_LENGTH

    if not secret_id:
        return "secret_id: nothing was pasted; paste the secret_id the provider's page shows"
    if len(secret_id) > SECRET_ID_MAX_LENGTH:
        return f"secret_id: {len(secret_id)} characters; at most {SECRET_ID_MAX_LENGTH} are allowed"
    return None


class TerminalSecretIdPrompt:
    """Asks for the secret_id of a consent the flow published (a `human_waits.oauth.SecretIdPrompt`)."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode

    async def __call__(self, source_key: str, consent_url: str) -> str | None:
        fd = sys.stdin.fileno()
        hide = os.isatty(fd)
        errors.print(
            f"Approve access for {cell(source_key)}: open this link, approve, then paste the secret_id "
            "the provider's page shows"
            + (" (input hidden; Ctrl-D to answer in the Prefect UI instead):" if hide else ":"),
            soft_wrap=True,
            highlight=False,
        )
        errors.print(f"  {cell(consent_url)}", soft_wrap=True, highlight=False)
        while True:
            line = await _read_line_beside_the_run(fd, "secret_id: " if hide else None)
            if line is None:
                warn(
                    "no secret_id was given here"
                    + (" (standard input ended)" if self.mode == "stdin" else "")
                    + "; the run waits for its resume form in the Prefect UI until its timeout"
                )
                return None
            secret_id = line.strip()
            problem = problem_with(secret_id)
            if problem is None:
                errors.print("secret_id received; completing the OAuth", highlight=False)
                return secret_id
            warn(problem)
            if not hide:  # a script gets one line: no second chance to read
                return None


@contextlib.contextmanager
def asking_for_secret_id(from_stdin: bool) -> Iterator[None]:
    """The local runs started inside the block ask for a secret_id: on the terminal when standard
    input is one, from standard input with `from_stdin`, not at all otherwise (the resume form in
    the Prefect UI answers then, as it always can)."""
    from splendor_flows.human_waits.oauth import prompting_for_secret_id

    if from_stdin:
        mode: Mode = "stdin"
    elif sys.stdin is not None and sys.stdin.isatty():
        mode = "terminal"
    else:
        yield
        return
    with prompting_for_secret_id(TerminalSecretIdPrompt(mode)):
        yield


def check_secret_id_options(from_stdin: bool, secret_block: str | None) -> None:
    if from_stdin and secret_block:
        fail("--secret-id-stdin and --oauth-secret-block both give the OAuth secret_id: pass one of them")
    if from_stdin and sys.stdin is None:
        fail("--secret-id-stdin: this process has no standard input to read the secret_id from")
