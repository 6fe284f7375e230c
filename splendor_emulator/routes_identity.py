"""Identity: `/v1/me` (no tenant header) and tenant API keys (§8)."""

import base64
import secrets

from fastapi import APIRouter, Request

from splendor_emulator.auth import Admin, AnyIdentity, runtime_of
from splendor_emulator.config import Role
from splendor_emulator.errors import ApiError
from splendor_emulator.models import ApiKeyItem, CreateApiKeyRequest, MeResponse, MeTenant
from splendor_emulator.store import ApiKeyRec, token_hash
from splendor_emulator.views import ts

router = APIRouter(tags=["Identity"])


@router.get("/v1/me", response_model=MeResponse, summary="Get current user")
async def me(request: Request, identity: AnyIdentity) -> MeResponse:
    rt = runtime_of(request)
    if identity.kind == "ingest_token":
        raise ApiError(403, "Ingest tokens can only stream logs to their own source")
    roles: list[tuple[str, Role]] = list(identity.roles)
    if identity.tenant_id is not None:
        roles = [(identity.tenant_id, "Admin")]
    tenants = []
    for tenant_id, role in roles:
        tenant = rt.config.tenant(tenant_id)
        if tenant is None:
            continue
        tenants.append(
            MeTenant(
                tenant_id=tenant.tenant_id,
                name=tenant.name,
                role=role,
                is_admin=role == "Admin" or not tenant.rbac_enabled,
                plan=tenant.plan,
                rbac_enabled=tenant.rbac_enabled,
                propelauth_org_id=f"org_{tenant.tenant_id}",
            )
        )
    return MeResponse(
        user_id=identity.subject, email=identity.email, is_staff=identity.is_staff, tenants=tenants
    )


@router.post("/v1/admin/api-keys", response_model=ApiKeyItem, summary="Create an API key for your tenant")
async def create_api_key(request: Request, caller: Admin, body: CreateApiKeyRequest) -> ApiKeyItem:
    if caller.kind != "user":
        # Machine keys cannot mint further credentials; only a real tenant admin can.
        raise ApiError(403, "Only a tenant admin user can create API keys")
    rt = runtime_of(request)
    encoded = base64.urlsafe_b64encode(caller.tenant_id.encode()).decode().rstrip("=")
    token = f"spltk.v1.{encoded}.{secrets.token_urlsafe(24).replace('.', '_')}"
    now = rt.now()
    rec = ApiKeyRec(
        key_id=rt.store.next_id("api_key") + 1000,
        tenant_id=caller.tenant_id,
        name=body.name,
        token_hash=token_hash(token),
        created_at=now,
    )
    rt.store.put(rec)
    return ApiKeyItem(
        id=rec.key_id, name=rec.name, created_at=ts(now), last_used_at=None, revoked_at=None, token=token
    )
