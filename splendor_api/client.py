"""The async client: one method per endpoint, all built from the route table."""

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
import pydantic
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception

from . import models
from .config import SplendorConfig
from .errors import (
    ApiError,
    ConfigError,
    Forbidden,
    NotTenantAdmin,
    OutcomeUnknown,
    RequestInvalid,
    ResponseInvalid,
    RetriesExhausted,
    error_class_for,
    mask_secrets,
    scrub_detail,
)
from .gate import RateGate
from .probe import ABSENT_PATH_VALUES, ProbeAnswer
from .retry import (
    AFTER_SEND_ERRORS,
    NOT_SENT_ERRORS,
    RETRY_STATUSES,
    SHED_STATUSES,
    RetryPolicy,
    is_load_shedding,
    is_retryable,
)
from .routes import ROUTES, Idempotency, Probe, Route
from .version import __version__

logger = logging.getLogger("splendor_api")

TENANT_HEADER = "X-Splendor-Tenant-Id"
USER_AGENT = f"splendor-flows/{__version__}"

T = TypeVar("T")
Req = TypeVar("Req", bound=models.RequestModel)

# Building a TypeAdapter is costly; each response type is built once per process.
_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any]] = {}


def _adapter(target: type[T]) -> pydantic.TypeAdapter[T]:
    adapter = _ADAPTERS.get(target)
    if adapter is None:
        adapter = _ADAPTERS[target] = pydantic.TypeAdapter(target)
    return adapter


def _loc(parts: tuple[int | str, ...], prefix: str | None) -> str:
    dotted = ".".join(str(p) for p in parts)
    if prefix:
        return f"{prefix}.{dotted}" if dotted else prefix
    return dotted or "(body)"


# Idle connections kept open. httpcore checks every pooled connection (a socket poll each) on every
# request and every response, so a pool of 20-50 mostly idle connections (httpx's default keeps 20)
# cost a fleet more CPU than its requests did: 9 of 30 ms per source on one worker (bench/sharded.py,
# N = 1,000). A fleet has a few requests in flight on average; a burst above this opens connections
# and closes them after.
KEEPALIVE_CONNECTIONS = 8


class SplendorClient:
    """Typed access to the Splendor admin API for one tenant.

    Use as ``async with SplendorClient(config) as client:``. Pass a shared ``RateGate`` so that clients
    of one process pause together when the API sheds load; without one the client gets its own.
    """

    def __init__(
        self,
        config: SplendorConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        gate: RateGate | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.retry_policy = retry_policy or RetryPolicy()
        self.gate = gate or RateGate(
            config.max_concurrency, clock=self.retry_policy.clock, sleep=self.retry_policy.sleep
        )
        # No default headers on the httpx client: auth is added per request, so presigned object-store URLs
        # (same client, same transport) never receive the Splendor token.
        self._http = httpx.AsyncClient(
            base_url=config.api_base,
            transport=transport,
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.read_timeout,
                pool=config.read_timeout,
            ),
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=min(KEEPALIVE_CONNECTIONS, config.max_concurrency),
            ),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        tenant = self.config.effective_tenant_id
        return f"SplendorClient(api_base={self.config.api_base!r}, tenant_id={tenant!r})"

    async def __aenter__(self) -> "SplendorClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- identity ------------------------------------------------------------------------------------

    async def me(self) -> models.Me:
        return await self._call("me", models.Me)

    async def preflight(self) -> models.TenantAccess:
        """Check the token reaches the configured tenant with the admin role every connector call needs."""
        me = await self.me()
        route = ROUTES["me"]
        if self.config.is_tenant_api_key:
            # A tenant API key has full access to the tenant it was minted for; /v1/me need not list it.
            key_tenant = self.config.key_tenant_id
            if key_tenant is None:
                raise ConfigError("the tenant API key names no tenant (its base64 segment does not decode)")
            if self.config.tenant_id is not None and self.config.tenant_id != key_tenant:
                raise ConfigError(
                    f"tenant_id is {self.config.tenant_id!r} but the tenant API key belongs to {key_tenant!r}"
                )
            listed = me.tenant(key_tenant)
            if listed is not None:
                return listed.model_copy(update={"is_admin": True})
            return models.TenantAccess(tenant_id=key_tenant, is_admin=True)
        tenant_id = self.config.tenant_id
        assert tenant_id is not None  # guaranteed by SplendorConfig for non-key tokens
        access = me.tenant(tenant_id)
        if access is None:
            raise Forbidden(
                status=403,
                method=route.method,
                path=route.template,
                route=route.name,
                detail=f"the token has no access to tenant {tenant_id}",
            )
        if not access.is_admin:
            role = f" (role {access.role}, plan {access.plan})" if access.role else ""
            raise NotTenantAdmin(
                status=403,
                method=route.method,
                path=route.template,
                route=route.name,
                detail=f"the token is not an admin of tenant {tenant_id}{role}",
                message=(
                    f"the token is not an admin of tenant {tenant_id}{role}; connector calls need the admin "
                    "role: use a tenant-admin token or a tenant API key"
                ),
            )
        return access

    # --- discovery -----------------------------------------------------------------------------------

    async def list_providers(self) -> list[models.Provider]:
        return await self._call("list_providers", list[models.Provider])

    async def discover_provider(self, provider_key: str) -> models.ProviderDiscovery:
        return await self._call(
            "discover_provider", models.ProviderDiscovery, path_params={"provider_key": provider_key}
        )

    async def search_catalog(self, q: str | None = None) -> list[models.SourceDefinition]:
        params = {"q": q} if q else None
        return await self._call("search_catalog", list[models.SourceDefinition], params=params)

    async def discover_catalog_definition(self, source_definition_id: str) -> models.CatalogDiscovery:
        return await self._call(
            "discover_catalog_definition",
            models.CatalogDiscovery,
            path_params={"source_definition_id": source_definition_id},
        )

    # --- Airbyte-backed sources ----------------------------------------------------------------------

    async def create_airbyte_source(self, req: models.CreateAirbyteSource) -> models.AirbyteSourceEnvelope:
        external_id = req.external_id.get_secret_value() if req.external_id is not None else None
        return await self._call(
            "create_airbyte_source",
            models.AirbyteSourceEnvelope,
            body=req.to_body(),
            secrets=[external_id] if external_id else (),
        )

    async def get_airbyte_source(self, source_id: int) -> models.AirbyteSourceEnvelope:
        return await self._call(
            "get_airbyte_source", models.AirbyteSourceEnvelope, path_params={"source_id": source_id}
        )

    async def provision(self, source_id: int, source_configuration: dict[str, Any]) -> models.ProvisionResult:
        body = self._build("provision", models.ProvisionRequest, source_configuration=source_configuration)
        return await self._call(
            "provision",
            models.ProvisionResult,
            path_params={"source_id": source_id},
            body=body.to_body(),
            secrets=_string_leaves(source_configuration),
        )

    async def complete_oauth(self, source_id: int, secret_id: str) -> models.AirbyteSourceEnvelope:
        body = self._build("complete_oauth", models.CompleteOAuthRequest, secret_id=secret_id)
        return await self._call(
            "complete_oauth",
            models.AirbyteSourceEnvelope,
            path_params={"source_id": source_id},
            body=body.to_body(),
            secrets=[secret_id],
        )

    async def discover_schema(self, source_id: int) -> list[models.StreamSchema]:
        return await self._call(
            "discover_schema", list[models.StreamSchema], path_params={"source_id": source_id}
        )

    async def create_connection(
        self, source_id: int, streams: list[str] | None = None
    ) -> models.AirbyteSourceEnvelope:
        # An empty object rather than no body: accepted both by handlers with an optional body and by ones
        # whose body model has only optional fields.
        body = self._build("create_connection", models.CreateConnectionRequest, streams=streams)
        return await self._call(
            "create_connection",
            models.AirbyteSourceEnvelope,
            path_params={"source_id": source_id},
            body=body.model_dump(mode="json", exclude_none=True),
        )

    async def start_sync(self, source_id: int, trigger: str = "manual") -> models.ConnectorRun:
        body = self._build("start_sync", models.StartSyncRequest, trigger=trigger)
        return await self._call(
            "start_sync", models.ConnectorRun, path_params={"source_id": source_id}, body=body.to_body()
        )

    async def refresh_run(self, run_id: int) -> models.ConnectorRun:
        return await self._call("refresh_run", models.ConnectorRun, path_params={"run_id": run_id})

    async def get_run(self, run_id: int) -> models.ConnectorRun:
        return await self._call("get_run", models.ConnectorRun, path_params={"run_id": run_id})

    async def list_runs(self, source_id: int, limit: int = 20) -> list[models.ConnectorRun]:
        """The source's most recent runs, newest first (assumed route: a 404 may mean it is missing)."""
        return await self._call(
            "list_runs",
            list[models.ConnectorRun],
            path_params={"source_id": source_id},
            params={"limit": limit},
        )

    async def enqueue_ingest(self, source_id: int, run_id: int | None = None) -> list[models.IngestRun]:
        body = self._build("enqueue_ingest", models.EnqueueIngestRequest, run_id=run_id)
        return await self._call(
            "enqueue_ingest",
            list[models.IngestRun],
            path_params={"source_id": source_id},
            body=body.model_dump(mode="json", exclude_none=True),
        )

    # --- ingest runs and sources ---------------------------------------------------------------------

    async def list_ingest_runs(
        self,
        *,
        source_id: int | None = None,
        dataset_id: str | None = None,
        status: str | None = None,
        include_non_current: bool = False,
    ) -> list[models.IngestRun]:
        params: dict[str, str | int] = {}
        if source_id is not None:
            params["source_id"] = source_id
        if dataset_id is not None:
            params["dataset_id"] = dataset_id
        if status is not None:
            params["status"] = status
        if include_non_current:
            # Also the runs a later one replaced for the same object, e.g. failures since repaired.
            params["include_non_current"] = "true"
        return await self._call("list_ingest_runs", list[models.IngestRun], params=params or None)

    async def get_ingest_run(self, ingest_run_id: str) -> models.IngestRun:
        return await self._call(
            "get_ingest_run", models.IngestRun, path_params={"ingest_run_id": ingest_run_id}
        )

    async def list_sources(self, dataset_id: str | None = None) -> list[models.Source]:
        params = {"dataset_id": dataset_id} if dataset_id is not None else None
        return await self._call("list_sources", list[models.Source], params=params)

    async def find_source(self, source_key: str) -> models.Source | None:
        """The source with this key, or None. The API has no filter by key, so this lists and matches."""
        sources = await self.list_sources()
        return next((s for s in sources if s.source_key == source_key), None)

    async def update_source(self, source_id: int, update: models.SourceUpdate) -> models.Source:
        return await self._call(
            "update_source", models.Source, path_params={"source_id": source_id}, body=update.to_body()
        )

    async def create_hosted_source(self, req: models.CreateHostedSource) -> models.Source:
        return await self._call("create_hosted_source", models.Source, body=req.to_body())

    # --- hosted uploads, logs, ingest tokens ---------------------------------------------------------

    async def initiate_upload(
        self,
        source_key: str,
        *,
        content_type: str,
        object_size_bytes: int,
        filename: str | None = None,
    ) -> models.UploadSession:
        body = self._build(
            "initiate_upload",
            models.InitiateUploadRequest,
            content_type=content_type,
            object_size_bytes=object_size_bytes,
            filename=filename,
        )
        return await self._call(
            "initiate_upload",
            models.UploadSession,
            path_params={"source_key": source_key},
            body=body.model_dump(mode="json", exclude_none=True),
        )

    async def sign_parts(
        self, source_key: str, upload_session_id: str, part_numbers: list[int]
    ) -> list[models.SignedPart]:
        body = self._build(
            "sign_parts",
            models.SignPartsRequest,
            upload_session_id=upload_session_id,
            part_numbers=part_numbers,
        )
        return await self._call(
            "sign_parts", list[models.SignedPart], path_params={"source_key": source_key}, body=body.to_body()
        )

    async def put_object(self, url: str, data: bytes, headers: Mapping[str, str]) -> str:
        """PUT bytes to a presigned URL (no Splendor auth) and return the ETag the store answered with."""
        route = ROUTES["put_object"]
        target = httpx.URL(url)
        # The query string of a presigned URL is a credential (its signature): never log or report it.
        shown = f"{target.host}{target.path}"

        def build() -> httpx.Request:
            return self._http.build_request(
                route.method, target, content=data, headers={"User-Agent": USER_AGENT, **dict(headers)}
            )

        response = await self._send(route, shown, build)
        etag: str | None = response.headers.get("ETag")
        if not etag:
            raise ResponseInvalid(
                method=route.method,
                path=shown,
                route=route.name,
                status=response.status_code,
                reason="the object store sent no ETag header",
                fields=["ETag"],
            )
        return etag

    async def complete_upload(
        self,
        source_key: str,
        upload_session_id: str,
        parts: list[models.CompletedPart] | None = None,
    ) -> models.CompletedUpload:
        body = self._build(
            "complete_upload", models.CompleteUploadRequest, upload_session_id=upload_session_id, parts=parts
        )
        return await self._call(
            "complete_upload",
            models.CompletedUpload,
            path_params={"source_key": source_key},
            body=body.model_dump(mode="json", exclude_none=True),
        )

    async def upload_readiness(self, upload_session_id: str) -> models.UploadReadiness:
        return await self._call(
            "upload_readiness", models.UploadReadiness, path_params={"upload_session_id": upload_session_id}
        )

    async def stream_logs(self, source_key: str, records: list[dict[str, Any]]) -> models.LogsAccepted:
        body = self._build("stream_logs", models.StreamLogsRequest, records=records)
        return await self._call(
            "stream_logs", models.LogsAccepted, path_params={"source_key": source_key}, body=body.to_body()
        )

    async def rotate_ingest_token(self, source_id: int) -> models.IngestToken:
        return await self._call(
            "rotate_ingest_token", models.IngestToken, path_params={"source_id": source_id}
        )

    # --- route checks --------------------------------------------------------------------------------

    async def probe_absent(self, route_name: str) -> ProbeAnswer:
        """Send a route once with ids that name nothing and the route table's refused body; return what
        the API answered, whatever the status. Shows whether the route exists without acting: the ids and
        the body come from the tables, never from the caller, so no real object can be named."""
        route = ROUTES[route_name]
        if route.external or route.probe is Probe.UNCHECKED:
            raise ValueError(f"route {route_name} cannot be probed safely")
        path = route.path(**ABSENT_PATH_VALUES)
        if path == route.template and route.probe_body is None and route.idempotency is Idempotency.MUTATING:
            raise ValueError(f"route {route_name} names no object and has no body to refuse")
        content = route.probe_body.encode() if route.probe_body is not None else None
        headers = self._headers(route, has_body=content is not None)
        request = self._http.build_request(route.method, path, content=content, headers=headers)
        async with self.gate.slot(honour_pause=True):
            response = await self._http.send(request)
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return ProbeAnswer(status=response.status_code, api_json=False)
        if not isinstance(data, dict) or "detail" not in data:
            return ProbeAnswer(status=response.status_code, api_json=False)
        detail = scrub_detail(data["detail"], [self.config.token.get_secret_value()])
        return ProbeAnswer(status=response.status_code, api_json=True, detail=detail)

    # --- plumbing ------------------------------------------------------------------------------------

    def _build(self, route_name: str, model: type[Req], **values: Any) -> Req:
        try:
            return model(**values)
        except pydantic.ValidationError as exc:
            errors = [
                (_loc(err["loc"], None), err["msg"])
                for err in exc.errors(include_url=False, include_input=False, include_context=False)
            ]
            raise RequestInvalid(route_name, errors) from None

    def _headers(self, route: Route, *, has_body: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.config.token.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        # Tenant API keys are bound to their tenant; the API expects no header with them.
        if route.tenant_header and not self.config.is_tenant_api_key and self.config.tenant_id:
            headers[TENANT_HEADER] = self.config.tenant_id
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _call(
        self,
        route_name: str,
        target: type[T],
        *,
        path_params: Mapping[str, str | int] | None = None,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        secrets: Sequence[str] = (),
    ) -> T:
        """One API call. ``secrets``: values the body carries that must never appear in an error."""
        route = ROUTES[route_name]
        path = route.path(**(path_params or {}))
        has_body = body is not None
        content = json.dumps(body, separators=(",", ":")).encode() if has_body else None
        headers = self._headers(route, has_body=has_body)

        def build() -> httpx.Request:
            return self._http.build_request(
                route.method, path, params=params, content=content, headers=headers
            )

        response = await self._send(route, path, build, secrets)
        return self._parse(route, path, response, target)

    async def _send(
        self, route: Route, path: str, build: Callable[[], httpx.Request], secrets: Sequence[str] = ()
    ) -> httpx.Response:
        """Send with retries; returns a 2xx response or raises one of the package's errors."""
        policy = self.retry_policy
        started = policy.clock()
        max_attempts = self.config.max_attempts
        budget = self.config.max_retry_seconds

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= max_attempts:
                return True
            # Give up now rather than sleep past the time budget.
            return policy.clock() - started + (state.upcoming_sleep or 0.0) > budget

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return policy.wait_after(state.attempt_number, error)

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.warning(
                "retrying %s %s (%s) after %s: attempt %d of %d failed, next in %.2f s",
                route.method,
                path,
                route.name,
                _short(error),
                state.attempt_number,
                max_attempts,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(is_retryable),
            sleep=policy.sleep,
            before_sleep=log_retry,
            reraise=False,
        )
        response: httpx.Response | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._attempt(route, path, build, secrets)
        except RetryError as exc:
            last = exc.last_attempt.exception() or exc
            raise RetriesExhausted(
                method=route.method,
                path=path,
                route=route.name,
                attempts=exc.last_attempt.attempt_number,
                elapsed=policy.clock() - started,
                last_error=last,
            ) from last
        assert response is not None
        return response

    async def _attempt(
        self, route: Route, path: str, build: Callable[[], httpx.Request], secrets: Sequence[str]
    ) -> httpx.Response:
        """One try. Raises transient errors for tenacity, or OutcomeUnknown where resending is unsafe."""
        mutating = route.idempotency is Idempotency.MUTATING
        request: httpx.Request = build()
        async with self.gate.slot(honour_pause=not route.external):
            clock = self.retry_policy.clock
            sent_at = clock()
            try:
                response = await self._http.send(request)
            except NOT_SENT_ERRORS:
                raise
            except AFTER_SEND_ERRORS as exc:
                if mutating:
                    raise OutcomeUnknown(method=route.method, path=path, route=route.name, cause=exc) from exc
                raise
        logger.debug(
            "%s %s (%s) -> %d in %.3f s",
            route.method,
            path,
            route.name,
            response.status_code,
            clock() - sent_at,
        )
        if response.is_success:
            return response
        error = self._error_from(route, path, response, secrets)
        if response.status_code in SHED_STATUSES and error.retry_after is not None and not route.external:
            self.gate.close_for(error.retry_after)
        if mutating and response.status_code in RETRY_STATUSES and not is_load_shedding(error):
            # A 5xx after sending (or a bare 503) may come after the call was applied: never resend.
            raise OutcomeUnknown(method=route.method, path=path, route=route.name, cause=error) from error
        raise error

    def _error_from(
        self, route: Route, path: str, response: httpx.Response, secrets: Sequence[str]
    ) -> ApiError:
        status = response.status_code
        detail = scrub_detail(_detail_of(response), [self.config.token.get_secret_value(), *secrets])
        retry_after = None
        if status in RETRY_STATUSES:
            retry_after = self.retry_policy.parse_retry_after(response.headers.get("Retry-After"))
        cls = error_class_for(status)
        return cls(
            status=status,
            method=route.method,
            path=path,
            route=route.name,
            detail=detail,
            retry_after=retry_after,
        )

    def _redact(self, text: str) -> str:
        """Mask the token should a server ever echo it back."""
        masked: str = mask_secrets(text, [self.config.token.get_secret_value()])
        return masked

    def _parse(self, route: Route, path: str, response: httpx.Response, target: type[T]) -> T:
        def invalid(reason: str, fields: list[str] | None = None) -> ResponseInvalid:
            return ResponseInvalid(
                method=route.method,
                path=path,
                route=route.name,
                status=response.status_code,
                reason=self._redact(reason),
                fields=fields,
            )

        content_type = response.headers.get("Content-Type", "")
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            kind = content_type.split(";")[0].strip() or "no content type"
            hint = _html_title(response.text) if "html" in kind else None
            raise invalid(
                f"body is not valid JSON ({kind}, {len(response.content)} bytes"
                + (f", page title {hint!r}" if hint else "")
                + "); a proxy error page or a truncated response?"
            ) from None
        if route.envelope is not None:
            if not isinstance(data, dict):
                raise invalid(f"expected a JSON object with field {route.envelope!r}", [route.envelope])
            if route.envelope not in data:
                raise invalid(f"missing field {route.envelope!r}", [route.envelope])
            data = data[route.envelope]
        try:
            adapter: pydantic.TypeAdapter[T] = _adapter(target)
            return adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            fields = [_loc(err["loc"], route.envelope) for err in errors]
            described = "; ".join(f"{field}: {err['msg']}" for field, err in zip(fields, errors, strict=True))
            raise invalid(f"response does not match the expected shape: {described}", fields) from None


def _detail_of(response: httpx.Response) -> Any:
    """The `detail` of an error body, or a short description when the body is not the API's JSON."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        if not text:
            return f"{response.reason_phrase or 'error'} (empty body)"
        title = _html_title(text)
        if title:
            return f"non-JSON error page: {title}"
        return " ".join(text.split())[:200]
    if isinstance(data, dict) and "detail" in data:
        return data["detail"]
    return data


def _string_leaves(value: Any) -> list[str]:
    """Every string inside a JSON-like value: the credentials a provision body may carry."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _string_leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _string_leaves(item)]
    return []


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _html_title(text: str) -> str | None:
    match = _TITLE.search(text)
    return " ".join(match.group(1).split())[:120] if match else None


def _short(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    if isinstance(error, ApiError):
        return f"HTTP {error.status}"
    return type(error).__name__
