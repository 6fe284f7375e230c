"""OAuth consent, at the level of the flow run: one consent link, one wait for an admin, one answer.

Why here and not in the provision task: a task that pauses and times out is retried by Prefect, which
then publishes a second consent link and cannot pause again (the run was left Paused with its task
Retrying). The wait is the flow run's:

- a deployment run suspends: its worker is released, the admin approves in the provider's page and
  pastes the secret_id into the run's resume form, and the run starts again from the top, where its
  checkpoints make the finished steps free and the form's answer is read back;
- a local run (CLI, tests) pauses in place, since there is no deployment to resubmit it; the CLI asks
  for the secret_id at the terminal (`prompting_for_secret_id`) and answers the form with it.

The wait itself is `human_waits.admin_wait`'s (shared with the classification review). Nobody
answering within `timeout_seconds` ends the run Failed, naming the wait. A paused run's timeout
raises there; a suspended run has no process left to raise, so the automation
`splendor-fail-unanswered-oauth` (deployments/automations.yaml) fails it.

The secret_id is a credential: it is never a flow parameter (Prefect stores those in plain text), and
an automation that already knows it passes the name of a Secret block holding it. The resume form's
answer is the one other place it lives, and only until Splendor has taken or refused it:

- a run that starts again under its own id (Retry, the resume of a crashed run) uses the answer its
  form already holds instead of asking again, and a run that finds the credentials ready deletes any
  answer an attempt that died after completing left behind;
- a deployment run keeps the answer while Splendor's outcome is unknown, so that such a restart can
  still complete; a local run deletes it as soon as it is read, since its next attempt is a new flow
  run that could never read it.
"""

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_link_artifact
from prefect.blocks.system import Secret
from prefect.input import RunInput
from pydantic import Field

from splendor_api import OutcomeUnknown, SplendorClient, SplendorError, ValidationFailed
from splendor_api.models import CredentialStatus
from splendor_flows.engine.clock import Clock, SystemClock
from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.engine.polling import PollGuard, PollOptions, backoff
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import CredentialState
from splendor_flows.human_waits.admin_wait import (
    AnswerPrompt,
    earlier_answer,
    forget_answer,
    reruns_as_itself,
    wait_for_admin,
)
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.secret_masking import remember_secrets
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.tasks.discover import ProviderDetails
from splendor_flows.tasks.provision import announce_ready, credential_status

STEP = "provision"
SECRET_ID_MAX_LENGTH = 512

# (source key, consent link) -> the secret_id read from the person at the terminal, or None to leave
# the answer to the run's resume form. Set by `splendor-flows connect` around the local runs it
# starts: a context variable, not a flow parameter, since parameters are stored and a callable is not
# a value.
SecretIdPrompt = Callable[[str, str], Awaitable[str | None]]
_SECRET_ID_PROMPT: ContextVar[SecretIdPrompt | None] = ContextVar("splendor_secret_id_prompt", default=None)


class OAuthApproval(RunInput):
    """What the admin pastes into the Prefect UI's resume form after approving consent."""

    secret_id: str = Field(
        min_length=1, max_length=SECRET_ID_MAX_LENGTH, description="secret_id from the consent redirect"
    )


@contextlib.contextmanager
def prompting_for_secret_id(prompt: SecretIdPrompt) -> Iterator[None]:
    """Local runs started inside the block ask `prompt` for the secret_id while they wait."""
    token = _SECRET_ID_PROMPT.set(prompt)
    try:
        yield
    finally:
        _SECRET_ID_PROMPT.reset(token)


def _prompt_for(source_key: str, consent_url: str) -> AnswerPrompt | None:
    ask = _SECRET_ID_PROMPT.get()
    if ask is None:
        return None

    async def answer() -> dict[str, Any] | None:
        secret_id = await ask(source_key, consent_url)
        return None if secret_id is None else {"secret_id": secret_id}

    return answer


async def _publish_consent(
    scope: Scope, source_id: int, provider: ProviderDetails, consent_url: str, timeout_seconds: int
) -> None:
    # The link itself stays out of the event: it is for whoever may approve (the run's artifact and
    # log), not for every reader of the event feed or of a notification channel.
    emit(
        Event.CREDENTIALS_WAITING,
        scope,
        {"source_id": source_id, "oauth_mode": provider.oauth_mode, "timeout_seconds": timeout_seconds},
    )
    get_run_logger().info(
        "Approve access for source '%s' within %s s at: %s", scope.source_key, timeout_seconds, consent_url
    )
    await acreate_link_artifact(
        link=consent_url,
        link_text=f"Approve {scope.source_key} access",
        key="splendor-oauth-consent",
        description="Open, approve, then paste the secret_id into this run's resume form.",
    )


def _unanswered(scope: Scope, timeout_seconds: int) -> PermanentStepError:
    return PermanentStepError(
        STEP,
        scope.source_key,
        f"nobody approved the OAuth consent within {timeout_seconds} s",
        "start the pipeline again with the same sync_id to publish a new consent link",
    )


async def _secret_from_block(scope: Scope, block_name: str) -> str:
    try:
        block: Secret[str] = await Secret.aload(block_name)
    except ValueError:
        raise SpecError(
            scope.source_key, f"oauth_secret_block: no Secret block named '{block_name}'"
        ) from None
    value = block.get()
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            scope.source_key, f"oauth_secret_block: '{block_name}' must hold the secret_id as text"
        )
    return value.strip()


async def _complete(client: SplendorClient, scope: Scope, source_id: int, secret_id: str) -> None:
    try:
        await client.complete_oauth(source_id, secret_id)
    except OutcomeUnknown:
        if await credential_status(client, source_id) != CredentialStatus.READY:
            raise
    except ValidationFailed:
        raise PermanentStepError(
            STEP,
            scope.source_key,
            "Splendor did not accept the secret_id (unknown or already used)",
            "approve the consent again and start the pipeline again with the same sync_id",
        ) from None


async def _wait_ready(
    client: SplendorClient, scope: Scope, source_id: int, timeout_seconds: int, clock: Clock | None = None
) -> None:
    """oauth_mode=splendor: Splendor runs the OAuth itself; its callback flips the status.

    Polled on the engine's rules (`PollGuard`): a failed request only slows the wait, an answer that
    asking again cannot change ends it. It looks at once, then after a second, each pause 1.5 times
    longer, never more than 10 s: an admin approves within seconds or minutes, not hours.
    """
    clock = clock or SystemClock()
    options = PollOptions(initial_seconds=1.0, factor=1.5, cap_seconds=10.0, deadline_seconds=timeout_seconds)
    guard = PollGuard(clock, options, step=STEP, scope=scope)
    answers = 0
    while guard.elapsed() < timeout_seconds:
        try:
            status = await credential_status(client, source_id)
        except SplendorError as exc:
            guard.failed(exc, f"the credentials of source {source_id}")
        else:
            guard.answered()
            if status == CredentialStatus.READY:
                return
            if status == CredentialStatus.FAILED:
                raise PermanentStepError(
                    STEP, scope.source_key, "OAuth authorisation failed (credential_status=failed)"
                )
            answers += 1
        # The wait ends at the timeout, not at the first look past it.
        pause = guard.pause_after(backoff(options, max(0, answers - 1)))
        await clock.sleep(min(pause, max(0.0, timeout_seconds - guard.elapsed())))
    raise _unanswered(scope, timeout_seconds)


async def _complete_and_forget(
    client: SplendorClient, scope: Scope, source_id: int, secret_id: str, pause_key: str | None
) -> None:
    """Complete the OAuth; a secret_id from the resume form (`pause_key` given) is deleted from the
    server once Splendor has taken or refused it. A run that can start again as itself keeps it while
    the outcome is unknown; a local run deletes it first (see the module's docstring)."""
    if pause_key is not None and not reruns_as_itself():
        await forget_answer(pause_key, "OAuth")
        pause_key = None
    try:
        await _complete(client, scope, source_id, secret_id)
    except PermanentStepError:  # refused: the secret_id is worth nothing any more
        if pause_key is not None:
            await forget_answer(pause_key, "OAuth")
        raise
    if pause_key is not None:
        await forget_answer(pause_key, "OAuth")


async def connect_oauth(
    scope: Scope,
    source_id: int,
    provider: ProviderDetails,
    *,
    timeout_seconds: int,
    secret_block: str | None = None,
) -> CredentialState:
    """Publish one consent link, wait for the admin (or read the secret_id from a Secret block, or
    from the answer this run's resume form holds already), and complete the OAuth; returns once
    Splendor reports the credentials ready."""
    pause_key = f"oauth-{source_id}"
    async with open_client(scope.credentials_block, step=STEP, source_key=scope.source_key) as client:
        status = await credential_status(client, source_id)
        if status == CredentialStatus.READY:
            # An earlier attempt of this run may have completed the OAuth and died before deleting
            # the secret_id from its resume form.
            await forget_answer(pause_key, "OAuth")
            return announce_ready(
                scope, CredentialState(source_id=source_id, credential_status=status, provisioned=False)
            )
        secret_id: str | None = None
        from_form = False
        if secret_block:
            secret_id = await _secret_from_block(scope, secret_block)
        else:
            given = await earlier_answer(OAuthApproval, pause_key)
            if given is not None:
                # Answered already: a suspended run started again, or an attempt that read the answer
                # died before Splendor confirmed it. Its consent link is out; no new one.
                secret_id, from_form = given.secret_id, True
                get_run_logger().info(
                    "Completing the OAuth of source %s with the secret_id this run's resume form holds",
                    source_id,
                )
        consent_url: str | None = None
        if not from_form and not (secret_id and status == CredentialStatus.PENDING_OAUTH):
            result = await client.provision(source_id, {})
            status = result.airbyte.credential_status
            if status != CredentialStatus.READY and secret_id is None:
                if not result.consent_url:
                    raise PermanentStepError(
                        STEP, scope.source_key, "OAuth provision returned no consent_url"
                    )
                consent_url = result.consent_url
                await _publish_consent(scope, source_id, provider, consent_url, timeout_seconds)
        if status != CredentialStatus.READY:
            if provider.oauth_mode == "splendor":
                await _wait_ready(client, scope, source_id, timeout_seconds)
            else:
                if secret_id is None:
                    approval = await wait_for_admin(
                        OAuthApproval,
                        pause_key=pause_key,
                        timeout_seconds=timeout_seconds,
                        unanswered=_unanswered(scope, timeout_seconds),
                        prompt=_prompt_for(scope.source_key, consent_url) if consent_url else None,
                    )
                    secret_id, from_form = approval.secret_id, True
                remember_secrets([secret_id])
                await _complete_and_forget(
                    client, scope, source_id, secret_id, pause_key if from_form else None
                )
        status = await credential_status(client, source_id)
    if status != CredentialStatus.READY:
        raise PermanentStepError(
            STEP, scope.source_key, f"credentials are not ready (credential_status={status})"
        )
    get_run_logger().info("Credentials of source %s are ready", source_id)
    return announce_ready(
        scope, CredentialState(source_id=source_id, credential_status=status, provisioned=True)
    )
