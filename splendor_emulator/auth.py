"""Authentication and tenancy (§2.1, §2.2).

Order of checks, as a FastAPI-based API would apply them: bad or missing token → 401; missing tenant header
where one is needed → 400; a tenant the token cannot act in → 403; a member on an admin route of a
growth-plan tenant → 403. Resources of other tenants are then simply not found (404) by the
tenant-scoped lookups."""

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from splendor_emulator.config import Role
from splendor_emulator.errors import ApiError
from splendor_emulator.runtime import Runtime
from splendor_emulator.store import ApiKeyRec, SourceRec, token_hash

TENANT_HEADER = "X-Splendor-Tenant-Id"

bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth", description="API token issued from the Splendor console", auto_error=False
)

CallerKind = Literal["user", "api_key", "platform_key", "ingest_token"]


@dataclass(frozen=True)
class Identity:
    kind: CallerKind
    subject: str
    email: str | None = None
    is_staff: bool = False
    roles: tuple[tuple[str, Role], ...] = ()
    tenant_id: str | None = None  # api keys and ingest tokens are bound to one tenant
    source_id: int | None = None  # ingest tokens are bound to one source
    key_id: int | None = None


@dataclass(frozen=True)
class Caller:
    identity: Identity
    tenant_id: str
    role: Role
    is_admin: bool

    @property
    def kind(self) -> CallerKind:
        return self.identity.kind


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _unauthorized(message: str = "Not authenticated") -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def b64_tenant(token: str) -> str | None:
    """The tenant encoded in a `spltk.v1.<b64>.<secret>` or `splpk.v1.<b64>.<secret>` token, if readable."""
    parts = token.split(".")
    if len(parts) < 4:
        return None
    try:
        return base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def identify(runtime: Runtime, token: str | None) -> Identity:
    if not token:
        raise _unauthorized()
    config = runtime.config
    for user in config.tokens:
        if user.token == token:
            return Identity(
                kind="user",
                subject=user.user_id,
                email=user.email,
                is_staff=user.is_staff,
                roles=tuple(user.roles.items()),
            )
    if token.startswith("spltk.v1."):
        for key in config.api_keys:
            if key.token == token:
                return Identity(
                    kind="api_key",
                    subject=f"api_key_{key.key_id}",
                    tenant_id=key.tenant_id,
                    key_id=key.key_id,
                )
        digest = token_hash(token)
        for minted in runtime.store.all(ApiKeyRec):
            if minted.token_hash == digest and minted.revoked_at is None:
                return Identity(
                    kind="api_key",
                    subject=f"api_key_{minted.key_id}",
                    tenant_id=minted.tenant_id,
                    key_id=minted.key_id,
                )
    if token.startswith("splpk.v1."):
        for platform in config.platform_keys:
            if platform.token == token:
                return Identity(
                    kind="platform_key",
                    subject="platform_key",
                    roles=tuple((t, "Admin") for t in platform.tenants),
                )
    if token.startswith("sit_live_"):
        digest = token_hash(token)
        for source in runtime.store.all(SourceRec):
            if source.ingest_token_hash == digest and source.ingest_token_revoked_at is None:
                return Identity(
                    kind="ingest_token",
                    subject=f"ingest_token_{source.source_id}",
                    tenant_id=source.tenant_id,
                    source_id=source.source_id,
                )
    raise _unauthorized("Invalid or expired token")


def resolve_caller(
    runtime: Runtime,
    token: str | None,
    tenant_header: str | None,
    *,
    admin: bool,
    allow_ingest_token: bool = False,
) -> Caller:
    identity = identify(runtime, token)
    header = tenant_header.strip() if tenant_header is not None else None

    if identity.kind == "ingest_token":
        if not allow_ingest_token:
            raise ApiError(403, "Ingest tokens can only stream logs to their own source")
        assert identity.tenant_id is not None
        if header and header != identity.tenant_id:
            raise ApiError(403, "Token has no access to this tenant")
        return Caller(identity, identity.tenant_id, "Member", False)

    if identity.kind == "api_key":
        assert identity.tenant_id is not None
        if header and header != identity.tenant_id:
            raise ApiError(403, "Token has no access to this tenant")
        # A tenant API key has full access to its own tenant.
        return Caller(identity, identity.tenant_id, "Admin", True)

    if not header:
        raise ApiError(400, f"Missing {TENANT_HEADER} header")
    role = dict(identity.roles).get(header)
    tenant = runtime.config.tenant(header)
    if role is None or tenant is None:
        raise ApiError(403, "Token has no access to this tenant")
    is_admin = role == "Admin" or not tenant.rbac_enabled
    if admin and not is_admin:
        raise ApiError(403, "Requires an admin role")
    return Caller(identity, header, role, is_admin)


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
TenantHeader = Annotated[
    str | None,
    Header(
        alias=TENANT_HEADER,
        description="Tenant to act in. Not needed with a tenant API key or a source ingest token.",
    ),
]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def member_caller(
    request: Request, credentials: BearerCredentials, tenant: TenantHeader = None
) -> Caller:
    return resolve_caller(runtime_of(request), _token(credentials), tenant, admin=False)


async def admin_caller(
    request: Request, credentials: BearerCredentials, tenant: TenantHeader = None
) -> Caller:
    return resolve_caller(runtime_of(request), _token(credentials), tenant, admin=True)


async def log_caller(request: Request, credentials: BearerCredentials, tenant: TenantHeader = None) -> Caller:
    return resolve_caller(
        runtime_of(request), _token(credentials), tenant, admin=False, allow_ingest_token=True
    )


async def identity_only(request: Request, credentials: BearerCredentials) -> Identity:
    return identify(runtime_of(request), _token(credentials))


Member = Annotated[Caller, Depends(member_caller)]
Admin = Annotated[Caller, Depends(admin_caller)]
LogWriter = Annotated[Caller, Depends(log_caller)]
AnyIdentity = Annotated[Identity, Depends(identity_only)]


def tenant_hint(headers: dict[str, str]) -> str | None:
    """Best-effort tenant of a request, for tenant-filtered faults (before any auth has run)."""
    header = headers.get(TENANT_HEADER.lower())
    if header:
        return header.strip()
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer spltk.v1."):
        return b64_tenant(auth[7:].strip())
    return None
