"""Error classes raised by the client.

Every class exposes ``permanent``: True when repeating the same call cannot help (a 4xx other than 429, a
malformed response, or retries already spent). Prefect's ``retry_condition_fn`` can refuse a task retry on
it, so HTTP-level retries (done here) and task-level retries (done by Prefect) do not multiply.

Messages name the HTTP method, the path, the status and the API's ``detail``. They never contain the token,
request headers or request bodies: provision bodies carry connector credentials.
"""

from collections.abc import Iterable
from typing import Any

# Longest detail text kept in a message; error pages can be large.
_MAX_DETAIL_CHARS = 500
# Shorter values are not masked: they would mangle ordinary words; real tokens and credentials are longer.
_MIN_SECRET_CHARS = 6
MASK = "***"


class SplendorError(Exception):
    """Base class of everything this package raises on purpose."""

    @property
    def permanent(self) -> bool:
        return True


class ConfigError(SplendorError, ValueError):
    """The client configuration is missing or inconsistent (e.g. an environment variable is not set)."""


class RequestInvalid(SplendorError, ValueError):
    """A request built by the client failed local validation; nothing was sent."""

    def __init__(self, route: str, field_errors: list[tuple[str, str]]) -> None:
        self.route = route
        self.field_errors = field_errors
        listed = "; ".join(f"{loc}: {msg}" for loc, msg in field_errors)
        super().__init__(f"{route}: invalid request, nothing was sent ({listed})")


def describe_detail(detail: object) -> str:
    """A short, human-readable rendering of an API ``detail`` (string, structured object or 422 list)."""
    if detail is None:
        return "no detail"
    if isinstance(detail, str):
        text = detail
    elif isinstance(detail, dict):
        code = detail.get("code")
        message = detail.get("message")
        extras = ", ".join(
            f"{key}={value}"
            for key, value in detail.items()
            if key not in ("code", "message") and isinstance(value, str | int | float | bool)
        )
        parts = [str(part) for part in (code, message) if part]
        text = ": ".join(parts) if parts else "structured detail"
        if extras:
            text = f"{text} ({extras})"
    elif isinstance(detail, list):
        text = "; ".join(f"{loc}: {msg}" for loc, msg in field_errors_of(detail)) or "validation failed"
    else:
        text = str(detail)
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[:_MAX_DETAIL_CHARS] + "…"
    return text


def field_errors_of(detail: object) -> list[tuple[str, str]]:
    """(dotted location, message) pairs from a FastAPI-style 422 detail list; other shapes give []."""
    if not isinstance(detail, list):
        return []
    errors: list[tuple[str, str]] = []
    for entry in detail:
        if isinstance(entry, dict):
            loc = entry.get("loc")
            where = ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else str(loc or "?")
            errors.append((where, str(entry.get("msg", "invalid"))))
        else:
            errors.append(("?", str(entry)))
    return errors


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of a secret replaced by ``***``, in strings at any depth."""
    # Longest first, so a secret that contains another is masked whole.
    masked = sorted({s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
    return _mask(value, masked) if masked else value


def _mask(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {_mask(key, secrets): _mask(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(item, secrets) for item in value]
    return value


def scrub_detail(detail: Any, secrets: Iterable[str]) -> Any:
    """An error ``detail`` safe to keep in exceptions and logs.

    FastAPI's 422 entries echo the submitted value under ``input`` (for provision: the credentials), so
    it is dropped; and a ``msg`` or ``ctx`` may quote the value it rejects ("'sk_live_…' does not match
    …"), so every secret the request carried (token, credentials, OAuth secret) is masked everywhere.
    """
    if isinstance(detail, list):
        detail = [
            {k: v for k, v in entry.items() if k != "input"} if isinstance(entry, dict) else entry
            for entry in detail
        ]
    return mask_secrets(detail, secrets)


class ApiError(SplendorError):
    """The API answered with an error status.

    ``detail`` is the body's ``detail`` as sent (a string, an object with ``code``/``message``, or a 422
    list), scrubbed by ``scrub_detail`` before it is stored.
    """

    def __init__(
        self,
        *,
        status: int,
        method: str,
        path: str,
        detail: str | dict[str, Any] | list[Any] | None,
        route: str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail
        self.route = route
        self.retry_after = retry_after
        where = f"{method} {path}" + (f" ({route})" if route else "")
        text = message or describe_detail(detail)
        super().__init__(f"{where} -> HTTP {status}: {text}")

    @property
    def code(self) -> str | None:
        if isinstance(self.detail, dict):
            code = self.detail.get("code")
            return str(code) if code is not None else None
        return None

    @property
    def permanent(self) -> bool:
        return 400 <= self.status < 500 and self.status != 429


class BadRequest(ApiError):
    """400: the request is wrong (also: the tenant header is missing)."""


class Unauthorized(ApiError):
    """401: the token is missing, malformed or expired."""


class Forbidden(ApiError):
    """403: no access to the tenant, or the role is too low."""


class NotTenantAdmin(Forbidden):
    """The token can reach the tenant but lacks the admin role every connector call needs."""


class NotFound(ApiError):
    """404: the resource does not exist."""


class Conflict(ApiError):
    """409: the request conflicts with the resource's state (``code`` says which conflict)."""

    def _detail_int(self, key: str) -> int | None:
        if isinstance(self.detail, dict):
            value = self.detail.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @property
    def run_id(self) -> int | None:
        """The run already in flight, for ``sync_in_progress``."""
        return self._detail_int("run_id")

    @property
    def source_id(self) -> int | None:
        """The existing source, for ``source_key_exists``."""
        return self._detail_int("source_id")


class ValidationFailed(ApiError):
    """422: the server rejected the request schema (or, for provision, the credentials' shape)."""

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        return field_errors_of(self.detail)


class UpstreamError(ApiError):
    """502: a provider request behind Splendor failed."""


class Unavailable(ApiError):
    """503 (or 429): the backend shed load; ``retry_after`` is the server's requested pause in seconds."""


class ServerError(ApiError):
    """Any other 5xx."""


class RetriesExhausted(SplendorError):
    """Transient failures continued until the attempt or time budget ran out."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        route: str,
        attempts: int,
        elapsed: float,
        last_error: BaseException,
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
        super().__init__(
            f"{method} {path} ({route}): gave up after {attempts} attempt(s) in {elapsed:.1f} s; "
            f"last error: {_describe_exception(last_error)}"
        )


class OutcomeUnknown(SplendorError):
    """A mutating request may or may not have been applied; it was not resent.

    Not permanent: the caller should re-read the remote state and then decide whether to act again.
    """

    def __init__(self, *, method: str, path: str, route: str, cause: BaseException) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.cause = cause
        super().__init__(
            f"{method} {path} ({route}): outcome unknown after {_describe_exception(cause)}; the server may "
            "have applied it. Re-read the remote state before retrying this call."
        )

    @property
    def permanent(self) -> bool:
        return False


class ResponseInvalid(SplendorError):
    """The response could not be used: not JSON, an HTML error page, truncated, or missing a field."""

    def __init__(
        self,
        *,
        method: str,
        path: str,
        route: str,
        status: int,
        reason: str,
        fields: list[str] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.status = status
        self.reason = reason
        self.fields = fields or []
        super().__init__(f"{method} {path} ({route}) -> HTTP {status}: unusable response: {reason}")


def _describe_exception(error: BaseException) -> str:
    if isinstance(error, SplendorError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# Status code -> class. 429 is treated like 503: the docs only promise 503 + Retry-After for load shedding.
_STATUS_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: Unavailable,
    502: UpstreamError,
    503: Unavailable,
}


def error_class_for(status: int) -> type[ApiError]:
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else ApiError
