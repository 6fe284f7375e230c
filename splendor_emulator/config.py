"""Configuration of the emulator: tenants, tokens, the provider catalog and timing knobs.

Everything here is plain data so it can come from a JSON file (`--config`), from CLI flags or from a test
building an `EmulatorConfig(...)` directly. The defaults are the documented demo seed (docs/emulator.md).
"""

import base64
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from splendor_emulator.faults import FaultSpec
from splendor_emulator.reshape import ROUTE_KEY, ShapeChange

Plan = Literal["growth", "standard"]
Role = Literal["Admin", "Member"]
AuthMode = Literal["oauth", "api_key"]
OAuthMode = Literal["airbyte", "splendor", "none"]
FieldType = Literal["string", "integer", "number", "boolean", "datetime", "date", "object", "array"]

# Stream names and provider keys end up as folder names under bucket_root, so the catalog only admits
# characters that are safe in a path segment.
SAFE_SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class TenantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(pattern=SAFE_SEGMENT)
    name: str
    plan: Plan = "growth"

    @property
    def rbac_enabled(self) -> bool:
        # Plans & RBAC: only the growth plan enforces roles; on standard every member acts as admin.
        return self.plan == "growth"


class UserTokenConfig(BaseModel):
    """A console (user) token: a bearer that needs the tenant header and has one role per tenant."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1)
    user_id: str
    email: str | None = None
    is_staff: bool = False
    roles: dict[str, Role]


class ApiKeyConfig(BaseModel):
    """A tenant API key (`spltk.v1.<b64 tenant>.<secret>`): no tenant header needed, full access to its
    tenant."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(pattern=r"^spltk\.v1\.[A-Za-z0-9_-]+\.[^.\s]+$")
    name: str = "api key"
    key_id: int = 1

    @property
    def tenant_id(self) -> str:
        encoded = self.token.split(".")[2]
        padded = encoded + "=" * (-len(encoded) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()


class PlatformKeyConfig(BaseModel):
    """A platform API key (`splpk.v1...`): acts inside the child tenants it created, named by the tenant
    header."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(pattern=r"^splpk\.v1\.[A-Za-z0-9_-]+\.[^.\s]+$")
    tenants: list[str]


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: FieldType = "string"


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SAFE_SEGMENT)
    fields: list[FieldSpec]
    record_count: int = Field(default=40, ge=0, le=1_000_000)
    default: bool = True
    supported_sync_modes: list[Literal["full_refresh", "incremental"]] = ["full_refresh", "incremental"]


class ProviderConfig(BaseModel):
    """One Airbyte source definition. `curated=True` ones are listed as connector providers too."""

    model_config = ConfigDict(extra="forbid")

    provider_key: str = Field(pattern=SAFE_SEGMENT)
    name: str
    source_definition_id: str
    docker_repository: str
    docker_image_tag: str
    auth_mode: AuthMode
    oauth_mode: OAuthMode = "none"
    connection_specification: dict[str, Any]
    oauth_input_configuration: dict[str, Any] = {}
    streams: list[StreamConfig]
    sync_seconds: float = Field(default=6.0, ge=0)
    curated: bool = True

    @model_validator(mode="after")
    def _modes_agree(self) -> "ProviderConfig":
        if (self.auth_mode == "oauth") != (self.oauth_mode != "none"):
            raise ValueError(
                "auth_mode 'oauth' needs an oauth_mode other than 'none', and api_key needs 'none'"
            )
        return self

    @property
    def default_streams(self) -> list[str]:
        return [s.name for s in self.streams if s.default]

    def stream(self, name: str) -> StreamConfig | None:
        return next((s for s in self.streams if s.name == name), None)


# The assumed route `list_runs_route` switches, in the counters' key form.
LIST_RUNS_ROUTE = "GET /v1/admin/airbyte-sources/{source_id}/runs"


def _default_tenants() -> list[TenantConfig]:
    return [
        TenantConfig(tenant_id="acme", name="Acme Corp", plan="growth"),
        TenantConfig(tenant_id="globex", name="Globex", plan="standard"),
    ]


def _default_tokens() -> list[UserTokenConfig]:
    return [
        UserTokenConfig(
            token="acme-admin-token",
            user_id="user_acme_admin",
            email="admin@acme.test",
            roles={"acme": "Admin"},
        ),
        UserTokenConfig(
            token="acme-member-token",
            user_id="user_acme_member",
            email="member@acme.test",
            roles={"acme": "Member"},
        ),
        UserTokenConfig(
            token="globex-user-token",
            user_id="user_globex",
            email="user@globex.test",
            roles={"globex": "Member"},
        ),
    ]


def _default_api_keys() -> list[ApiKeyConfig]:
    return [ApiKeyConfig(token="spltk.v1.YWNtZQ.local-demo-key", name="local demo key", key_id=1)]


def _default_providers() -> list[ProviderConfig]:
    from splendor_emulator.catalog import default_providers

    return default_providers()


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[TenantConfig] = Field(default_factory=_default_tenants)
    tokens: list[UserTokenConfig] = Field(default_factory=_default_tokens)
    api_keys: list[ApiKeyConfig] = Field(default_factory=_default_api_keys)
    platform_keys: list[PlatformKeyConfig] = []
    providers: list[ProviderConfig] = Field(default_factory=_default_providers)

    sync_seconds: float | None = Field(
        default=None, ge=0, description="Override every provider's sync duration (one attempt), in seconds."
    )
    records_per_stream: int | None = Field(
        default=None, ge=0, description="Override every stream's record count per run."
    )
    ingest_seconds: float = Field(default=1.0, ge=0, description="Time an ingest run spends in each state.")
    latency_ms: float = Field(default=0.0, ge=0, description="Latency added to every API request.")
    bucket_root: Path | None = Field(default=None, description="Folder holding the local 'buckets'.")

    upload_single_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=0, description="Uploads above this size use multipart mode."
    )
    upload_part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="Part size for multipart.")
    upload_max_object_bytes: int = Field(
        default=5 * 1024**4, ge=0, description="Largest declared object size."
    )
    presign_ttl_seconds: int = Field(default=3600, ge=1)
    signing_secret: str = "splendor-emulator-local-signing-secret"

    faults: list[FaultSpec] = Field(default=[], description="Fault specs active from the start.")
    list_runs_route: bool = Field(
        default=True,
        description="Serve GET /v1/admin/airbyte-sources/{id}/runs (an assumed path); off answers 404, "
        "as an API without that page would.",
    )
    routes_off: list[Annotated[str, Field(pattern=ROUTE_KEY)]] = Field(
        default=[],
        description='Routes ("METHOD /route/template", as in the counters) answered 404 {"detail": "Not '
        'Found"} before any handler runs, as an API without them would.',
    )
    reshaped: list[ShapeChange] = Field(
        default=[], description="Changes made to routes' successful JSON answers (reshape.py)."
    )

    def route_is_off(self, route_key: str) -> bool:
        if route_key in self.routes_off:
            return True
        return not self.list_runs_route and route_key == LIST_RUNS_ROUTE

    def shape_changes(self, route_key: str) -> list[ShapeChange]:
        return [change for change in self.reshaped if change.route == route_key]

    @model_validator(mode="after")
    def _references_resolve(self) -> "EmulatorConfig":
        known = {t.tenant_id for t in self.tenants}
        for token in self.tokens:
            unknown = set(token.roles) - known
            if unknown:
                raise ValueError(f"token for {token.user_id} names unknown tenants {sorted(unknown)}")
        for key in self.api_keys:
            if key.tenant_id not in known:
                raise ValueError(f"api key {key.name!r} encodes unknown tenant {key.tenant_id!r}")
        keys = [p.provider_key for p in self.providers]
        if len(keys) != len(set(keys)):
            raise ValueError("provider keys must be unique")
        return self

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        return next((t for t in self.tenants if t.tenant_id == tenant_id), None)
