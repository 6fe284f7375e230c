"""Connection settings for one Splendor tenant."""

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .errors import ConfigError

DEFAULT_API_BASE = "https://api.withsplendor.com"

# Tenant API keys (`spltk.v1.<base64 tenant>.<secret>`) are bound to one tenant: the API wants no tenant
# header with them. Platform keys (`splpk.v1.`) and console tokens do need the header.
TENANT_KEY_PREFIX = "spltk.v1."

ENV_API_BASE = "SPLENDOR_API_BASE"
ENV_TENANT_ID = "SPLENDOR_TENANT_ID"
ENV_TOKEN = "SPLENDOR_TOKEN"
# Optional HTTP tuning, e.g. for a work pool's environment: variable → SplendorConfig field.
ENV_TUNING = {
    "SPLENDOR_MAX_ATTEMPTS": "max_attempts",
    "SPLENDOR_MAX_RETRY_SECONDS": "max_retry_seconds",
    "SPLENDOR_READ_TIMEOUT": "read_timeout",
    "SPLENDOR_CONNECT_TIMEOUT": "connect_timeout",
    "SPLENDOR_MAX_CONCURRENCY": "max_concurrency",
}


def read_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every SPLENDOR_* setting that is set (and not blank), by variable name. The one place that reads
    the environment for API settings, so a variable cannot mean two things in two modules."""
    source: Mapping[str, str] = os.environ if env is None else env
    names = (ENV_API_BASE, ENV_TENANT_ID, ENV_TOKEN, *ENV_TUNING)
    return {name: source[name].strip() for name in names if source.get(name, "").strip()}


def tuning_from_env(env: Mapping[str, str] | None = None) -> dict[str, int | float]:
    """The HTTP tuning fields set in the environment, parsed; a bad value names its variable."""
    settings = read_env(env)
    tuning: dict[str, int | float] = {}
    for variable, field in ENV_TUNING.items():
        if variable not in settings:
            continue
        kind = int if field in ("max_attempts", "max_concurrency") else float
        try:
            tuning[field] = kind(settings[variable])
        except ValueError:
            wanted = "an integer" if kind is int else "a number"
            raise ConfigError(f"{variable} must be {wanted}, got {settings[variable]!r}") from None
    return tuning


def tenant_of_api_key(token: str) -> str | None:
    """The tenant id encoded in a tenant API key, or None when the token is not one or does not decode."""
    if not token.startswith(TENANT_KEY_PREFIX):
        return None
    segment = token[len(TENANT_KEY_PREFIX) :].split(".", 1)[0]
    if not segment:
        return None
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8") or None
    except (binascii.Error, UnicodeError, ValueError):
        return None


class SplendorConfig(BaseModel):
    """Where and as whom to call the API.

    ``repr``/``str`` show the token masked; validation errors never echo input values.
    """

    # hide_input_in_errors: a validation error must not print the token it was given.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    api_base: str = DEFAULT_API_BASE
    tenant_id: str | None = None
    token: SecretStr
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    max_retry_seconds: float = Field(default=120.0, ge=0)
    max_concurrency: int = Field(default=32, ge=1)

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("api_base must start with http:// or https://")
        return value

    @field_validator("tenant_id")
    @classmethod
    def _blank_tenant_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None

    @model_validator(mode="after")
    def _check_token_and_tenant(self) -> Self:
        token = self.token.get_secret_value()
        if not token.strip():
            raise ValueError("token must not be empty")
        if self.tenant_id is None and not self.is_tenant_api_key:
            raise ValueError(
                "tenant_id is required unless token is a tenant API key (spltk.v1.…) bound to one tenant"
            )
        return self

    @property
    def is_tenant_api_key(self) -> bool:
        """True for a machine key bound to one tenant: no tenant header is sent with it."""
        return self.token.get_secret_value().startswith(TENANT_KEY_PREFIX)

    @property
    def key_tenant_id(self) -> str | None:
        """The tenant a tenant API key belongs to (decoded from the key), else None."""
        return tenant_of_api_key(self.token.get_secret_value())

    @property
    def effective_tenant_id(self) -> str | None:
        """The tenant requests act on: the configured one, or the one a tenant API key names."""
        return self.tenant_id or self.key_tenant_id

    @property
    def tenant(self) -> str:
        """The tenant requests act on; checkpoints and fingerprints are filed under it, so there is no
        placeholder: a key whose tenant segment does not decode is a configuration error."""
        tenant = self.effective_tenant_id
        if tenant is None:
            raise ConfigError(
                "no tenant: the token is a tenant API key whose tenant segment does not decode; "
                f"set {ENV_TENANT_ID} or the credentials block's tenant_id"
            )
        return tenant

    def with_tuning(self, tuning: Mapping[str, int | float]) -> "SplendorConfig":
        """A copy with HTTP tuning applied, validated like the constructor's fields."""
        if not tuning:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), "token": self.token, **tuning})
        except ValueError as exc:
            raise ConfigError(f"invalid HTTP tuning: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SplendorConfig":
        """Build from SPLENDOR_API_BASE (optional), SPLENDOR_TENANT_ID, SPLENDOR_TOKEN and the tuning."""
        source = read_env(env)
        token = source.get(ENV_TOKEN, "")
        if not token:
            raise ConfigError(f"{ENV_TOKEN} is not set: export a tenant-admin token or a tenant API key")
        tenant_id = source.get(ENV_TENANT_ID) or None
        if tenant_id is None and not token.startswith(TENANT_KEY_PREFIX):
            raise ConfigError(
                f"{ENV_TENANT_ID} is not set: it is required unless {ENV_TOKEN} is a tenant API key "
                "(spltk.v1.…)"
            )
        api_base = source.get(ENV_API_BASE) or DEFAULT_API_BASE
        try:
            config = cls(api_base=api_base, tenant_id=tenant_id, token=SecretStr(token))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ConfigError(f"invalid Splendor settings from the environment: {exc}") from None
        return config.with_tuning(tuning_from_env(env))
