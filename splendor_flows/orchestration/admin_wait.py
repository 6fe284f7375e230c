"""Waiting for an admin's answer in the Prefect UI: one way for every flow that needs a person.

The answer is a typed `RunInput`: the UI renders it as the run's resume form, and the Prefect server
checks what is submitted against the form's JSON schema before the run resumes.

- A deployment run suspends: its worker is released. When the admin answers, the run starts again
  from the top, where its checkpoints make the finished steps free, and the suspend hands back the
  answer stored on the server (same pause key).
- A local run (CLI, tests) pauses in place, since there is no deployment to resubmit it.

Nobody answering within the timeout raises the caller's `unanswered` error. A paused run's timeout
raises here; a suspended run has no process left to raise, so an automation has to fail it.
"""

import asyncio
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput, keyset_from_paused_state
from prefect.runtime import deployment, flow_run
from prefect.states import Paused, Suspended

F = TypeVar("F", bound=RunInput)

# The server's pause outlives our own wait by this much: once a pause has expired, Prefect replaces
# whatever state the run proposes with its own "never resumed" failure, and the run would end without
# saying which wait nobody answered.
PAUSE_GRACE_SECONDS = 60


def _response_keys(pause_key: str) -> list[str]:
    # Where Prefect stores the resume form's answer (prefect.input.keyset_from_paused_state): the key
    # starts with the state's name, so a pause and a suspend of the same key differ.
    states: list[State[Any]] = [Paused(pause_key=pause_key), Suspended(pause_key=pause_key)]
    return [keyset_from_paused_state(state)["response"] for state in states]


async def answered(pause_key: str) -> bool:
    """Whether this flow run's resume form was already answered (a suspended run starting again)."""
    run_id = flow_run.get_id()
    if run_id is None:
        return False
    async with get_client() as client:
        for key in _response_keys(pause_key):
            try:
                await client.read_flow_run_input(UUID(run_id), key)
                return True
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
    return False


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
        # The answer was used by now: a failed clean-up must not fail the pipeline, but must be seen.
        get_run_logger().warning(
            "Could not delete this run's %s resume input (%s); delete it by hand", what, type(exc).__name__
        )


async def wait_for_admin(form: type[F], *, pause_key: str, timeout_seconds: int, unanswered: Exception) -> F:
    """The admin's answer to `form`: suspend a deployment run, pause a local one; `unanswered` is
    raised when nobody answers within `timeout_seconds` (or the run is resumed without an answer)."""
    try:
        if deployment.id is not None:
            answer = await asuspend_flow_run(wait_for_input=form, timeout=timeout_seconds, key=pause_key)
            if answer is None:  # resumed without the form's answer
                raise unanswered
        else:
            answer = await asyncio.wait_for(
                apause_flow_run(
                    wait_for_input=form,
                    timeout=timeout_seconds + PAUSE_GRACE_SECONDS,
                    poll_interval=2,
                    key=pause_key,
                ),
                timeout_seconds,
            )
    except (TimeoutError, FlowPauseTimeout):
        raise unanswered from None
    return answer
