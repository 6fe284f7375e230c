"""Riding out a Prefect API that is busy or restarting, and one clear line when it stays away too long.

A SQLite-backed Prefect server answers `503 Service Unavailable` to a request that found its database
locked by another writer (Prefect 3.9.1 rolls the request back and sends 503 for "database is locked"
and SQLITE_BUSY, so sending it again is safe); a restarting server refuses connections, and a proxy in
front of one answers 502 or 503. Prefect's own API client already sends such a request again: 408, 429,
502, 503, timeouts and dropped or (once it has connected) refused connections, up to
`PREFECT_CLIENT_MAX_RETRIES` times, waiting 2, 4, 8, ... s (or the `Retry-After` the server gave).

So riding an outage out is a matter of giving that client a longer budget, not of a retry loop of our
own around each call: the client's loop covers every call the flow engine makes on our behalf
(creating the flow run, its state changes, task runs, variables, artifacts), which no wrapper of ours
could reach, and it keeps honouring `Retry-After`. Prefect's default of 5 retries gives up after about
62 s; a busy SQLite server on a loaded machine has been seen answering 503 to one request for longer.
"""

import contextlib
from collections.abc import Iterator

import httpx
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

# Waits of 2 + 4 + ... + 128 s: a request gives up after about 254 s (Prefect adds up to 20 % jitter).
# Long enough for a server restart or a burst of SQLite lock contention; short enough that a server
# that is really gone ends the pipeline within minutes, not hours.
RIDE_OUT_RETRIES = 7

# What Prefect's client sends again (prefect.client.base.PrefectHttpxAsyncClient.send): one of these
# reaching the caller means the client's budget is spent, i.e. the API stayed unavailable.
RETRIED_STATUSES = frozenset({408, 429, 502, 503})


def ride_out_seconds(retries: int) -> int:
    """How long Prefect's client waits in all before it gives up on a request (without jitter)."""
    return int(2 ** (retries + 1) - 2)


@contextlib.contextmanager
def riding_out_prefect_outages() -> Iterator[None]:
    """Prefect API calls made inside wait out an outage for `RIDE_OUT_RETRIES` retries; an outage
    that outlasts them leaves as `PrefectUnavailable` (raised from Prefect's own error).

    A default, not an override: `PREFECT_CLIENT_MAX_RETRIES` set in the environment or the Prefect
    profile wins (0 to fail at once, more to wait longer).
    """
    with temporary_settings(set_defaults={PREFECT_CLIENT_MAX_RETRIES: RIDE_OUT_RETRIES}):
        try:
            yield
        except Exception as exc:
            # Described here, while the budget it quotes is still the one in force.
            outage = prefect_outage(exc)
            if outage is None:
                raise
            raise outage from exc


class PrefectUnavailable(Exception):
    """The Prefect API did not answer usefully, even after Prefect's client retried."""

    def __init__(self, api_url: str, what: str, todo: str) -> None:
        self.api_url = api_url
        super().__init__(f"Prefect API at {api_url} unavailable: {what} — {todo}")


def _public(url: str) -> str:
    """The URL without user info or query: a Prefect API URL may carry a password."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}".rstrip("/")


def _request_of(exc: httpx.RequestError | httpx.HTTPStatusError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # an httpx error raised without its request
        return None


def _api_call(request: httpx.Request, api_url: str) -> str:
    """ "POST /flow_runs" for a call to `api_url`, the whole path for any other."""
    url = _public(str(request.url))
    path = url[len(api_url) :] if api_url and url.startswith(api_url) else request.url.path
    return f"{request.method} {path or '/'}"


def prefect_outage(exc: BaseException) -> PrefectUnavailable | None:
    """The outage `exc` (or what it was raised from) shows, or None when it is another failure.

    An error status Prefect's client does not retry (400, 404, 409, 422, 500) is not an outage: it
    says something about the request or the server that waiting will not change.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = current if isinstance(current, PrefectUnavailable) else _outage_of(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _outage_of(exc: BaseException) -> PrefectUnavailable | None:
    configured = str(PREFECT_API_URL.value() or "")
    api_url = _public(configured) if configured else ""
    retries = int(PREFECT_CLIENT_MAX_RETRIES.value())
    if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code in RETRIED_STATUSES:
        response = exc.response
        request = _request_of(exc)
        if not api_url:  # no URL configured (a temporary server): its API sits under /api
            api_url = _public(str(request.url.copy_with(path="/api"))) if request else "?"
        call = f" to {_api_call(request, api_url)}" if request else ""
        return PrefectUnavailable(
            api_url,
            f"it answered {response.status_code} {response.reason_phrase}{call}, still after "
            f"{retries} {'retry' if retries == 1 else 'retries'} over about {ride_out_seconds(retries)} s",
            "the server is busy (SQLite answers so while its database is locked by another writer) or "
            f"restarting; once {api_url}/health answers, run again with the same sync_id "
            "(PREFECT_CLIENT_MAX_RETRIES sets how long to wait; a busy server is better on PostgreSQL)",
        )
    if isinstance(exc, httpx.TransportError):
        request = _request_of(exc)
        if request is None or not api_url or not _public(str(request.url)).startswith(api_url):
            return None  # not a call to the Prefect API
        return PrefectUnavailable(
            api_url,
            f"{_api_call(request, api_url)} got no answer ({type(exc).__name__}: {str(exc) or 'no detail'})",
            "is the Prefect server running and reachable? Start it (`prefect server start`) or point "
            "PREFECT_API_URL at it, then run again with the same sync_id",
        )
    return None
