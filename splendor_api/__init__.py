"""Typed async client for Splendor's connector admin API.

Imports only httpx, pydantic, tenacity and the standard library, so it can be used outside Prefect.
"""

from . import models, routes
from .client import TENANT_HEADER, USER_AGENT, SplendorClient
from .config import SplendorConfig, tenant_of_api_key
from .errors import (
    ApiError,
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    NotTenantAdmin,
    OutcomeUnknown,
    RequestInvalid,
    ResponseInvalid,
    RetriesExhausted,
    ServerError,
    SplendorError,
    Unauthorized,
    Unavailable,
    UpstreamError,
    ValidationFailed,
)
from .gate import RateGate
from .models import (
    INGEST_TERMINAL_BAD,
    INGEST_TERMINAL_OK,
    RUN_ACTIVE,
    RUN_TERMINAL,
    AuthMode,
    ConnectionStatus,
    CredentialStatus,
    IngestStatus,
    RunStatus,
)
from .retry import RetryPolicy
from .routes import ROUTES, Idempotency, Route, Tag
from .version import __version__

__all__ = [
    "INGEST_TERMINAL_BAD",
    "INGEST_TERMINAL_OK",
    "ROUTES",
    "RUN_ACTIVE",
    "RUN_TERMINAL",
    "TENANT_HEADER",
    "USER_AGENT",
    "ApiError",
    "AuthMode",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ConnectionStatus",
    "CredentialStatus",
    "Forbidden",
    "Idempotency",
    "IngestStatus",
    "NotFound",
    "NotTenantAdmin",
    "OutcomeUnknown",
    "RateGate",
    "RequestInvalid",
    "ResponseInvalid",
    "RetriesExhausted",
    "RetryPolicy",
    "Route",
    "RunStatus",
    "ServerError",
    "SplendorClient",
    "SplendorConfig",
    "SplendorError",
    "Tag",
    "Unauthorized",
    "Unavailable",
    "UpstreamError",
    "ValidationFailed",
    "__version__",
    "models",
    "routes",
    "tenant_of_api_key",
]
