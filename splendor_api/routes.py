"""Every endpoint the client calls, in one table.

Each route records its method, path template, idempotency class, the key its payload is wrapped in, and
where the facts come from: ``DOC`` (the public docs) or ``ASSUMED`` (the docs are silent; the project's
contract decides). ``tag`` covers the method and path, ``shape_tag`` the request/response bodies. When the
live API turns out to differ, this table (and the models it names) is the one place to change.
"""

import enum
from dataclasses import dataclass
from urllib.parse import quote


class Idempotency(enum.Enum):
    # Safe to resend on any transient failure: repeating it cannot change remote state twice.
    READ = "read"
    # Resent only when the request provably never reached the handler (connect failure, 503/429 load
    # shedding). Any other failure after sending raises OutcomeUnknown instead.
    MUTATING = "mutating"


class Tag(enum.Enum):
    DOC = "DOC"
    ASSUMED = "ASSUMED"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    template: str
    idempotency: Idempotency
    tag: Tag
    shape_tag: Tag
    # Key of the JSON object the payload sits in (``{"sources": [...]}``); None when the body is the payload.
    envelope: str | None = None
    # The tenant header is sent unless the route is tenant-less (/v1/me) or the token is a tenant API key.
    tenant_header: bool = True
    # A presigned object-store URL: no Splendor auth, not subject to the API's Retry-After gate.
    external: bool = False
    note: str = ""

    def path(self, **params: str | int) -> str:
        """The template with every parameter filled in and URL-quoted."""
        return self.template.format(**{key: quote(str(value), safe="") for key, value in params.items()})


R = Idempotency.READ
M = Idempotency.MUTATING
DOC = Tag.DOC
ASSUMED = Tag.ASSUMED

_ALL = [
    # --- identity ---
    Route("me", "GET", "/v1/me", R, DOC, DOC, tenant_header=False, note="no tenant header"),
    # --- discovery ---
    Route(
        "list_providers",
        "GET",
        "/v1/admin/connector-providers",
        R,
        DOC,
        ASSUMED,
        envelope="providers",
        note="response shape not documented",
    ),
    Route(
        "discover_provider",
        "POST",
        "/v1/admin/connector-providers/{provider_key}/airbyte-discovery",
        R,
        DOC,
        DOC,
        note="POST without body; reads only",
    ),
    Route(
        "search_catalog",
        "GET",
        "/v1/admin/airbyte-catalog",
        R,
        DOC,
        ASSUMED,
        envelope="source_definitions",
        note="`q` query parameter and response shape not documented",
    ),
    Route(
        "discover_catalog_definition",
        "POST",
        "/v1/admin/airbyte-catalog/{source_definition_id}/discover",
        R,
        DOC,
        DOC,
        note="POST without body; reads only",
    ),
    # --- Airbyte-backed sources ---
    Route("create_airbyte_source", "POST", "/v1/admin/airbyte-sources", M, DOC, DOC),
    Route(
        "get_airbyte_source",
        "GET",
        "/v1/admin/airbyte-sources/{source_id}",
        R,
        ASSUMED,
        ASSUMED,
        note="not documented; used to read state before acting",
    ),
    Route(
        "provision",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/provision",
        M,
        DOC,
        ASSUMED,
        note="top-level consent_url for OAuth providers is assumed",
    ),
    Route(
        "complete_oauth",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/oauth/complete",
        M,
        ASSUMED,
        ASSUMED,
        note='path inferred from "oauth/complete"; body {"secret_id"} assumed',
    ),
    Route(
        "discover_schema",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/discover-schema",
        R,
        DOC,
        ASSUMED,
        envelope="streams",
        note="response shape not documented",
    ),
    Route(
        "create_connection",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/connection",
        M,
        ASSUMED,
        ASSUMED,
        note="path inferred by analogy with /provision and /sync",
    ),
    Route("start_sync", "POST", "/v1/admin/airbyte-sources/{source_id}/sync", M, DOC, DOC, envelope="run"),
    Route(
        "refresh_run",
        "POST",
        "/v1/admin/airbyte-runs/{run_id}/refresh",
        R,
        DOC,
        DOC,
        envelope="run",
        note="POST, but only re-reads the run from Airbyte",
    ),
    Route(
        "get_run",
        "GET",
        "/v1/admin/airbyte-runs/{run_id}",
        R,
        ASSUMED,
        ASSUMED,
        envelope="run",
        note="not documented; refresh_run is the documented poll",
    ),
    Route(
        "list_runs",
        "GET",
        "/v1/admin/airbyte-sources/{source_id}/runs",
        R,
        ASSUMED,
        ASSUMED,
        envelope="runs",
        note='the docs name a "List Airbyte runs" page whose path was not captured; callers treat a '
        "404 as 'this API cannot list runs' and fall back",
    ),
    Route(
        "enqueue_ingest",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
        M,
        DOC,
        ASSUMED,
        envelope="ingest_runs",
        note='optional body {"run_id"} and the response are assumed; so is the repair rule: enqueueing '
        "a run again queues afresh each object whose ingest run failed with lifecycle.repairable=true "
        "and marks that run superseded (engine/repair.py)",
    ),
    # --- ingest runs and sources ---
    Route(
        "list_ingest_runs",
        "GET",
        "/v1/ingest/runs",
        R,
        DOC,
        ASSUMED,
        envelope="runs",
        note="include_non_current is documented; that it adds the superseded runs (repaired failures) "
        "is assumed",
    ),
    Route(
        "get_ingest_run",
        "GET",
        "/v1/ingest/runs/{ingest_run_id}",
        R,
        DOC,
        ASSUMED,
        note="path named in the docs; a bare IngestRunItem response is assumed",
    ),
    Route("list_sources", "GET", "/v1/admin/sources", R, DOC, DOC, envelope="sources"),
    Route(
        "update_source",
        "PUT",
        "/v1/admin/sources/{source_id}",
        M,
        DOC,
        ASSUMED,
        note="partial update and SourceItem response assumed",
    ),
    Route(
        "create_hosted_source",
        "POST",
        "/v1/admin/hosted-sources",
        M,
        DOC,
        ASSUMED,
        note="SourceItem response assumed",
    ),
    # --- hosted uploads, logs, ingest tokens ---
    Route("initiate_upload", "POST", "/v1/ingest/sources/{source_key}/uploads", M, DOC, DOC),
    Route(
        "sign_parts",
        "POST",
        "/v1/ingest/sources/{source_key}/uploads/parts",
        R,
        DOC,
        DOC,
        envelope="parts",
        note="signing URLs again changes nothing remotely",
    ),
    Route(
        "put_object",
        "PUT",
        "{url}",
        R,
        ASSUMED,
        ASSUMED,
        external=True,
        note="presigned object-store URL; the ETag response header is standard S3 behaviour",
    ),
    Route("complete_upload", "POST", "/v1/ingest/sources/{source_key}/uploads/complete", M, DOC, DOC),
    Route("upload_readiness", "GET", "/v1/admin/hosted-uploads/{upload_session_id}/readiness", R, DOC, DOC),
    Route(
        "stream_logs",
        "POST",
        "/v1/ingest/sources/{source_key}/logs",
        M,
        DOC,
        ASSUMED,
        note="202; only fragment_id is documented in the response",
    ),
    Route("rotate_ingest_token", "POST", "/v1/admin/sources/{source_id}/ingest-token", M, DOC, DOC),
]

ROUTES: dict[str, Route] = {route.name: route for route in _ALL}
