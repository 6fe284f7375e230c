"""The secrets this execution context has handled, masked in whatever leaves the process.

Error texts come from Splendor (a run's or an ingest run's `error_message`), and an upstream system
may quote what it was given, a key it rejected for instance. So events, logs that quote Splendor,
checkpoints and failure messages are masked against the secrets this context has handled (the API
token, the connector credentials, an OAuth secret_id). They are remembered in a context variable, not
a module global: what one flow run loaded is masked in its own output and in the tasks it starts.
"""

import json
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from splendor_api.errors import mask_secrets

_SECRETS: ContextVar[frozenset[str]] = ContextVar("splendor_secrets_in_use", default=frozenset())


def remember_secrets(values: Iterable[Any]) -> None:
    """Mask these values (and the strings nested in them) in everything this context sends out from now."""
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


def masked_payload(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the secrets this context handled masked in every string it holds."""
    result: dict[str, Any] = mask_secrets(body, _SECRETS.get())
    return result


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
