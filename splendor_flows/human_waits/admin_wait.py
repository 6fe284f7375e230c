"""Waiting for an admin's answer in the Prefect UI: one way for every flow that needs a person.

The answer is a typed `RunInput`: the UI renders it as the run's resume form, and the Prefect server
checks what is submitted against the form's JSON schema before the run resumes.

- A deployment run suspends: its worker is released. When the admin answers, the run starts again
  from the top, where its checkpoints make the finished steps free, and finds the answer stored on
  the server (`earlier_answer`).
- A local run (CLI, tests) pauses in place, since there is no deployment to resubmit it. Something
  beside it (a terminal prompt) may answer the form for the admin (`AnswerPrompt`).

Read the answer already given before waiting again. Prefect resets a run's pause keys whenever the run
leaves a terminal state (the UI's Retry, the automation that reschedules a crashed run), and a pause
that fires again deletes whatever its form holds. A run that crashed after the answer came, or failed
after reading it, would otherwise ask again without anyone seeing a question, and the answer would be
gone. So the callers look up `earlier_answer` first and only wait when there is none.

Nobody answering within the timeout raises the caller's `unanswered` error. A paused run's timeout
raises here; a suspended run has no process left to raise, so an automation has to fail it.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput, keyset_from_paused_state
from prefect.runtime import deployment, flow_run
from prefect.states import Paused, Suspended
from pydantic import ValidationError

F = TypeVar("F", bound=RunInput)

# Obtains the resume form's values from someone other than the UI (a terminal prompt beside a local
# run), or None to leave the answer to the form. Called once the run is paused.
AnswerPrompt = Callable[[], Awaitable[dict[str, Any] | None]]

# The server's pause outlives our own wait by this much: once a pause has expired, Prefect replaces
# whatever state the run proposes with its own "never resumed" failure, and the run would end without
# saying which wait nobody answered.
PAUSE_GRACE_SECONDS = 60
# How often a local run's pause looks for the answer (Prefect's default is 10 s).
PAUSE_POLL_SECONDS = 2


def _response_keys(pause_key: str) -> list[str]:
    # Where Prefect stores the resume form's answer (prefect.input.keyset_from_paused_state): the key
    # starts with the state's name, so a pause and a suspend of the same key differ.
    states: list[State[Any]] = [Paused(pause_key=pause_key), Suspended(pause_key=pause_key)]
    return [keyset_from_paused_state(state)["response"] for state in states]


def reruns_as_itself() -> bool:
    """Whether this flow run can start again under its own id (a deployment run: the UI's Retry, the
    resume of a crashed run, a suspended run being answered). A local run cannot: its next attempt is
    a new flow run, which never sees this one's resume form."""
    return deployment.id is not None


async def earlier_answer(form: type[F], pause_key: str) -> F | None:
    """The answer this flow run's resume form holds already, or None.

    A run holds one when it starts again under its own id after the answer was given: a suspended
    run resumed by the form, or a run that crashed or failed after reading it and was rescheduled. An
    answer that no longer fits the form (the form changed since it was asked) counts as none: the
    caller asks again, and the new wait deletes it.
    """
    run_id = flow_run.get_id()
    if run_id is None:
        return None
    async with get_client() as client:
        for key in _response_keys(pause_key):
            try:
                raw = await client.read_flow_run_input(UUID(run_id), key)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                continue
            try:
                return form.model_validate(json.loads(raw))
            except (ValueError, ValidationError):
                # Never the value in the log: a form's answer may be a credential.
                get_run_logger().warning(
                    "This run's earlier answer to its resume form no longer fits the form; asking again"
                )
    return None


async def forget_answer(pause_key: str, what: str) -> None:
    """Delete the resume form's answer from the Prefect server (where it is stored in plain text)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return
    try:
        async with get_client() as client:
            for key in _response_keys(pause_key):
                try:
                    await client.delete_flow_run_input(UUID(run_id), key)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
    except httpx.HTTPError as exc:
        # Deleting must not fail the pipeline, but must be seen.
        get_run_logger().warning(
            "Could not delete this run's %s resume input (%s); delete it by hand", what, type(exc).__name__
        )


async def _answer_in_place(prompt: AnswerPrompt, run_id: UUID) -> None:
    """Once the local run is paused, ask `prompt` and resume the run with its answer: the answer is
    stored where the UI's form would store it, and the pause reads it from there. Whatever goes wrong
    here leaves the run waiting for its form, as it would without a prompt."""
    try:
        await _resume_with(prompt, run_id)
    except (httpx.HTTPError, OSError) as exc:
        get_run_logger().warning(
            "Could not pass the answer given here to the run (%s); answer in its resume form",
            type(exc).__name__,
        )


async def _resume_with(prompt: AnswerPrompt, run_id: UUID) -> None:
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(run_id)
            if run.state is not None and run.state.is_paused():
                break
            if run.state is not None and run.state.is_final():
                return
            await asyncio.sleep(0.2)
        values = await prompt()
        if values is None:
            return
        result = await client.resume_flow_run(run_id, run_input=values)
    if result.status != SetStateStatus.ACCEPT:
        # The server's reason may quote the refused value: it stays out of the log.
        get_run_logger().warning(
            "The Prefect server refused the answer given here (%s); answer in the run's resume form",
            result.status.value,
        )


async def wait_for_admin(
    form: type[F],
    *,
    pause_key: str,
    timeout_seconds: int,
    unanswered: Exception,
    prompt: AnswerPrompt | None = None,
) -> F:
    """The admin's answer to `form`: suspend a deployment run, pause a local one; `unanswered` is
    raised when nobody answers within `timeout_seconds` (or the run is resumed without an answer).

    Callers look up `earlier_answer` first: a wait deletes any answer the form already holds. A local
    run's `prompt`, if given, is asked beside the pause, and answers the form for the admin.
    """
    try:
        if deployment.id is not None:
            answer = await asuspend_flow_run(wait_for_input=form, timeout=timeout_seconds, key=pause_key)
            if answer is None:  # resumed without the form's answer
                raise unanswered
            return answer
        run_id = flow_run.get_id()
        asking = (
            asyncio.create_task(_answer_in_place(prompt, UUID(run_id)))
            if prompt is not None and run_id is not None
            else None
        )
        try:
            return await asyncio.wait_for(
                apause_flow_run(
                    wait_for_input=form,
                    timeout=timeout_seconds + PAUSE_GRACE_SECONDS,
                    poll_interval=PAUSE_POLL_SECONDS,
                    key=pause_key,
                ),
                timeout_seconds,
            )
        finally:
            if asking is not None:
                asking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asking
    except (TimeoutError, FlowPauseTimeout):
        raise unanswered from None
