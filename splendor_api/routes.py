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


class Probe(enum.Enum):
    """How `splendor-flows doctor` checks a route without changing anything (docs/doctor.md)."""

    # A read: called as the flows call it, on the tenant's own objects; where the tenant has none to read,
    # with an id that cannot exist (which shows the route is there, not the shape of its answer).
    CALL = "call"
    # A write on one object: called with an id that cannot exist and, where it takes a body, a body the
    # API must refuse (422). Either refusal shows the route is there; nothing can be acted on.
    ABSENT_ID = "absent id"
    # A write that creates: called with a body the API must refuse with 422 before acting.
    REFUSED_BODY = "refused body"
    # No call could be sure to change nothing: listed, never called.
    UNCHECKED = "unchecked"


# What a FastAPI router answers for a path it does not have (with 405 for a path it has under another
# method). Any other 404 detail ("Source not found") comes from a handler: the route is there.
UNKNOWN_ROUTE_DETAIL = "Not Found"


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
    # The connect and sync chain cannot do without a required route; for an optional one `degrades` says
    # what stops working without it.
    required: bool = True
    degrades: str = ""
    probe: Probe = Probe.CALL
    # ABSENT_ID / REFUSED_BODY: the JSON body the API must refuse (a field missing or of the wrong type).
    probe_body: str | None = None

    def __post_init__(self) -> None:
        if not self.required and not self.degrades:
            raise ValueError(f"route {self.name}: an optional route must say what degrades without it")
        if self.probe is Probe.REFUSED_BODY and self.probe_body is None:
            raise ValueError(f"route {self.name}: a refused-body probe needs the body")
        if self.probe is Probe.ABSENT_ID and "{" not in self.template:
            raise ValueError(f"route {self.name}: an absent-id probe needs an id in the path")
        # A write is never called as it is: only in a way that cannot act (or not at all).
        if self.idempotency is Idempotency.MUTATING and self.probe is Probe.CALL:
            raise ValueError(f"route {self.name}: a mutating route cannot be probed by calling it")

    def path(self, **params: str | int) -> str:
        """The template with every parameter filled in and URL-quoted."""
        return self.template.format(**{key: quote(str(value), safe="") for key, value in params.items()})


R = Idempotency.READ
M = Idempotency.MUTATING
DOC = Tag.DOC
ASSUMED = Tag.ASSUMED
ABSENT_ID = Probe.ABSENT_ID
REFUSED_BODY = Probe.REFUSED_BODY
UNCHECKED = Probe.UNCHECKED

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
        required=False,
        degrades="`catalog search` cannot list the long tail of connectors (curated providers are "
        "unaffected)",
    ),
    Route(
        "discover_catalog_definition",
        "POST",
        "/v1/admin/airbyte-catalog/{source_definition_id}/discover",
        R,
        DOC,
        DOC,
        note="POST without body; reads only",
        required=False,
        degrades="sources given by source_definition_id (the catalog's long tail) cannot connect; curated "
        "providers are unaffected",
    ),
    # --- Airbyte-backed sources ---
    Route(
        "create_airbyte_source",
        "POST",
        "/v1/admin/airbyte-sources",
        M,
        DOC,
        DOC,
        probe=REFUSED_BODY,
        probe_body="{}",
    ),
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
        probe=ABSENT_ID,
        probe_body='{"source_configuration": "not-an-object"}',
    ),
    Route(
        "complete_oauth",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/oauth/complete",
        M,
        ASSUMED,
        ASSUMED,
        note='path inferred from "oauth/complete"; body {"secret_id"} assumed',
        required=False,
        degrades="OAuth providers whose consent Airbyte runs (oauth_mode airbyte) cannot finish connecting; "
        "API-key providers and Splendor-run OAuth are unaffected",
        probe=ABSENT_ID,
        probe_body="{}",
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
        required=False,
        degrades="a spec that names its streams or asks for classification stops at discovery; one that "
        "keeps the provider's default streams connects",
    ),
    Route(
        "create_connection",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/connection",
        M,
        ASSUMED,
        ASSUMED,
        note="path inferred by analogy with /provision and /sync",
        probe=ABSENT_ID,
        probe_body='{"streams": "not-a-list"}',
    ),
    Route(
        "start_sync",
        "POST",
        "/v1/admin/airbyte-sources/{source_id}/sync",
        M,
        DOC,
        DOC,
        envelope="run",
        probe=ABSENT_ID,
        probe_body='{"trigger": "not-a-trigger"}',
    ),
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
        required=False,
        degrades="a start that meets a sync already in flight (409 sync_in_progress), or a resumed attempt "
        "whose run is recorded, cannot attach to that run and stops",
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
        required=False,
        degrades="a lost start-sync answer stops the pipeline and names the attempt, instead of finding "
        "the run it started",
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
        probe=ABSENT_ID,
        probe_body='{"run_id": "not-a-number"}',
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
        required=False,
        degrades="a source whose settings changed in its spec cannot be updated (connect and apply stop "
        "there), nor can a classification be written; new sources connect",
        probe=ABSENT_ID,
        probe_body='{"enabled": "not-a-boolean"}',
    ),
    Route(
        "create_hosted_source",
        "POST",
        "/v1/admin/hosted-sources",
        M,
        DOC,
        ASSUMED,
        note="SourceItem response assumed",
        required=False,
        degrades="no flow calls it (hosted sources are made in the console); only direct users of the "
        "client lose it",
        probe=REFUSED_BODY,
        probe_body="{}",
    ),
    # --- hosted uploads, logs, ingest tokens ---
    Route(
        "initiate_upload",
        "POST",
        "/v1/ingest/sources/{source_key}/uploads",
        M,
        DOC,
        DOC,
        required=False,
        degrades="`upload` cannot send files to hosted sources",
        probe=ABSENT_ID,
        probe_body="{}",
    ),
    Route(
        "sign_parts",
        "POST",
        "/v1/ingest/sources/{source_key}/uploads/parts",
        R,
        DOC,
        DOC,
        envelope="parts",
        note="signing URLs again changes nothing remotely",
        required=False,
        degrades="files above the single-upload size (multipart) cannot be uploaded",
        probe=ABSENT_ID,
        probe_body="{}",
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
        required=False,
        degrades="`upload` cannot send the bytes of a file",
        probe=UNCHECKED,
    ),
    Route(
        "complete_upload",
        "POST",
        "/v1/ingest/sources/{source_key}/uploads/complete",
        M,
        DOC,
        DOC,
        required=False,
        degrades="uploads cannot be finished, so nothing uploaded is ingested",
        probe=ABSENT_ID,
        probe_body="{}",
    ),
    Route(
        "upload_readiness",
        "GET",
        "/v1/admin/hosted-uploads/{upload_session_id}/readiness",
        R,
        DOC,
        DOC,
        required=False,
        degrades="an upload cannot be followed to its ingest run",
    ),
    Route(
        "stream_logs",
        "POST",
        "/v1/ingest/sources/{source_key}/logs",
        M,
        DOC,
        ASSUMED,
        note="202; only fragment_id is documented in the response",
        required=False,
        degrades="no flow calls it; only direct users of the client lose it",
        probe=ABSENT_ID,
        probe_body="{}",
    ),
    Route(
        "rotate_ingest_token",
        "POST",
        "/v1/admin/sources/{source_id}/ingest-token",
        M,
        DOC,
        DOC,
        required=False,
        degrades="no flow calls it; only direct users of the client lose it",
        probe=ABSENT_ID,
    ),
]

ROUTES: dict[str, Route] = {route.name: route for route in _ALL}
