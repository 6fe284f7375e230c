"""Prefect events the pipelines publish, for automations (design §6).

Every event goes out through `emit`: resource id `splendor.source.<tenant>.<source_key>` with the
tenant and source key as labels, a payload of ids, counts, statuses and error texts, plus the
pipeline's `sync_id` and the Prefect flow run it came from (what a notification links to).

Error texts come from Splendor (a run's or an ingest run's `error_message`), and an upstream system
may quote what it was given, a key it rejected for instance. So every payload is masked against the
secrets this execution context has handled (the API token, the connector credentials, an OAuth
secret_id) before it leaves the process. They are remembered in a context variable, not a module
global: what one flow run loaded is masked in its own events and in the tasks it starts.
"""

import functools
import json
import uuid
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from prefect.events import emit_event
from prefect.runtime import flow_run

from splendor_api.errors import mask_secrets
from splendor_flows.engine.report import Event
from splendor_flows.orchestration.checkpoint import Scope

_SECRETS: ContextVar[frozenset[str]] = ContextVar("splendor_secrets_in_use", default=frozenset())

P = ParamSpec("P")
R = TypeVar("R")


def remember_secrets(values: Iterable[Any]) -> None:
    """Mask these values (and the strings nested in them) in every event this context emits from now."""
    found = set(_strings(values))
    if found - _SECRETS.get():
        _SECRETS.set(_SECRETS.get() | found)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, Iterable):
        for item in value:
            yield from _strings(item)


def event_payload(scope: Scope, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an event carries: the pipeline's ids first, then the step's fields, secrets masked."""
    run_id = flow_run.get_id()
    body: dict[str, Any] = {
        "tenant": scope.tenant,
        "source_key": scope.source_key,
        "sync_id": scope.sync_id,
        "flow_run_id": str(run_id) if run_id else None,
        **(payload or {}),
    }
    masked: dict[str, Any] = mask_secrets(body, _SECRETS.get())
    return masked


def masked(text: str) -> str:
    """`text` with the secrets this context handled masked (for logs that quote Splendor's errors)."""
    result: str = mask_secrets(text, _SECRETS.get())
    return result


def masked_json(data: bytes) -> bytes:
    """Serialized JSON with the secrets this context handled masked, each as JSON writes it (escaped)."""
    secrets = _SECRETS.get()
    if not secrets:
        return data
    masked_text: str = mask_secrets(data.decode(), [json.dumps(secret)[1:-1] for secret in secrets])
    return masked_text.encode()


def mask_failure(exc: BaseException) -> None:
    """Mask, in place, the secrets this context handled in the exception's text (its `args`, which is
    what every error of this project prints)."""
    exc.args = tuple(mask_secrets(list(exc.args), _SECRETS.get()))


def masks_failures(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A flow function whose failure never quotes a secret the run handled.

    Prefect turns the exception leaving a flow into the run's state message ("Flow run encountered an
    exception: StepError: [sync] ..."), which the UI and the run's logs show and the flow-run failure
    notification sends on; a Splendor run's error may quote the credential or the token it was given.
    Put it under `@flow` (the signature and docstring Prefect reads are the wrapped function's).
    """

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            mask_failure(exc)
            raise

    return run


def emit(
    name: Event, scope: Scope, payload: dict[str, Any] | None = None, *, event_id: uuid.UUID | None = None
) -> None:
    emit_event(
        event=str(name),
        resource={
            "prefect.resource.id": scope.resource_id,
            "splendor.tenant": scope.tenant,
            "splendor.source_key": scope.source_key,
        },
        payload=event_payload(scope, payload),
        id=event_id,
    )


def artifact_slug(source_key: str) -> str:
    """A source key as Prefect artifact keys allow it (lowercase letters, digits and dashes only)."""
    return "".join(c if c.isalnum() else "-" for c in source_key.lower())
