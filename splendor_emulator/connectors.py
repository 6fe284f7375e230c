"""The Airbyte-backed source lifecycle: create → provision (credentials or OAuth) → connection → sync →
ingest.

Every function takes the tenant the caller acts in; lookups are tenant-scoped so other tenants' ids are 404.
State changes happen under the store lock so concurrent pipelines see one consistent order.
"""

import hashlib
import json
import secrets
from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError as SchemaError  # type: ignore[import-untyped]

from splendor_emulator.config import ProviderConfig
from splendor_emulator.errors import ApiError, conflict, invalid, not_found
from splendor_emulator.ingest import INGEST_ERRORS, view_ingest
from splendor_emulator.models import (
    AirbyteSourceEnvelope,
    AirbyteSourceResult,
    CreateAirbyteSourceRequest,
    CreateConnectionRequest,
    DiscoverSchemaResult,
    EnqueueIngestResult,
    ProvisionResult,
    RunEnvelope,
    RunList,
    StreamField,
    StreamSchema,
    SyncRequest,
)
from splendor_emulator.runs import plan_run, view_run
from splendor_emulator.runtime import Runtime, new_id
from splendor_emulator.store import (
    AirbyteRec,
    ConnectorRec,
    CredentialRec,
    IngestRec,
    OAuthSecretRec,
    OAuthStateRec,
    RunRec,
    SourceRec,
)
from splendor_emulator.views import airbyte_state, connector_item, ingest_item, run_item, source_item


def envelope(rt: Runtime, src: SourceRec) -> AirbyteSourceEnvelope:
    connector = rt.store.get(ConnectorRec, src.connector_id) if src.connector_id is not None else None
    if connector is None:
        raise not_found("Connector")
    return AirbyteSourceEnvelope(
        airbyte=airbyte_state(src), connector=connector_item(connector), source=source_item(src)
    )


def result(src: SourceRec) -> AirbyteSourceResult:
    return AirbyteSourceResult(airbyte=airbyte_state(src), source=source_item(src))


def _check_streams(provider: ProviderConfig, streams: list[str], loc: str) -> None:
    known = {s.name for s in provider.streams}
    if not streams:
        raise invalid(["body", loc], "at least one stream is required")
    for index, name in enumerate(streams):
        if name not in known:
            raise invalid(
                ["body", loc, index],
                f"unknown stream for provider {provider.provider_key}; "
                f"known streams: {', '.join(sorted(known))}",
            )
    if len(set(streams)) != len(streams):
        raise invalid(["body", loc], "streams must not repeat")


def create_source(rt: Runtime, tenant: str, body: CreateAirbyteSourceRequest) -> AirbyteSourceEnvelope:
    if body.provider_key is not None:
        provider = rt.provider(body.provider_key)
        if provider is None:
            raise not_found(f"Provider {body.provider_key}")
        if (
            body.source_definition_id is not None
            and body.source_definition_id != provider.source_definition_id
        ):
            raise invalid(["body", "source_definition_id"], "does not belong to the given provider_key")
    else:
        assert body.source_definition_id is not None
        provider = rt.definition(body.source_definition_id)
        if provider is None:
            raise not_found("Source definition")
    streams = body.streams if body.streams is not None else provider.default_streams
    _check_streams(provider, streams, "streams")

    with rt.store.lock:
        existing = rt.source_by_key(tenant, body.source_key)
        if existing is not None:
            raise conflict(
                "source_key_exists",
                f"A source with key '{body.source_key}' already exists in this tenant",
                source_id=existing.source_id,
            )
        now = rt.now()
        connector = ConnectorRec(
            connector_id=rt.store.next_id("connector"),
            tenant_id=tenant,
            connector_key=body.connector_key,
            name=body.connector_name,
            config={
                "provider_key": provider.provider_key,
                "airbyte_source_definition_id": provider.source_definition_id,
            },
            enabled=body.enabled,
            created_at=now,
            updated_at=now,
        )
        src = SourceRec(
            source_id=rt.store.next_id("source"),
            tenant_id=tenant,
            source_key=body.source_key,
            source_type="airbyte",
            name=body.source_name,
            dataset_id=body.dataset_id,
            bucket=body.bucket,
            prefix=body.prefix,
            iam_role_arn=body.iam_role_arn,
            external_id_configured=body.external_id is not None,
            connector_id=connector.connector_id,
            enabled=body.enabled,
            retention_days=body.retention_days,
            parse_config=body.parse_config,
            transform_config=body.transform_config,
            search_config=body.search_config.model_dump(mode="json", exclude_none=True),
            semantic_config=body.semantic_config.model_dump(mode="json", exclude_none=True),
            created_at=now,
            updated_at=now,
            airbyte=AirbyteRec(
                provider_key=provider.provider_key,
                source_definition_id=provider.source_definition_id,
                source_definition_name=provider.name,
                oauth_mode=provider.oauth_mode,
                schedule_type=body.schedule_type,
                cron_expression=body.cron_expression,
                streams=streams,
            ),
        )
        rt.store.put(connector)
        rt.add_source(src)
        return envelope(rt, src)


# --- credentials --------------------------------------------------------------------------------------------


def _schema_message(error: SchemaError) -> str:
    """Describe a JSON-Schema failure from the schema side only: the submitted value (maybe a secret) is never
    quoted back."""
    kind, expected = error.validator, error.validator_value
    if kind == "pattern":
        return f"does not match the required pattern {expected}"
    if kind == "type":
        return f"must be of type {expected}"
    if kind == "enum":
        return f"must be one of {', '.join(json.dumps(v) for v in expected)}"
    if kind == "const":
        return f"must equal {json.dumps(expected)}"
    if kind in ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems"):
        return f"fails the {kind} constraint ({expected})"
    if kind == "additionalProperties":
        return "has properties the specification does not allow"
    return f"fails the {kind} constraint"


def validate_configuration(
    spec: dict[str, Any], configuration: dict[str, Any], *, partial: bool
) -> list[dict[str, Any]]:
    if partial:  # OAuth: credentials arrive through consent, so only the fields sent are checked
        spec = {k: v for k, v in spec.items() if k != "required"}
    errors: list[dict[str, Any]] = []
    for error in sorted(
        Draft7Validator(spec).iter_errors(configuration), key=lambda e: list(e.absolute_path)
    ):
        loc: list[str | int] = ["body", "source_configuration", *error.absolute_path]
        if error.validator == "required":
            present = error.instance if isinstance(error.instance, dict) else {}
            for name in error.validator_value:
                if name not in present:
                    errors.append({"loc": [*loc, name], "msg": "Field required", "type": "missing"})
            continue
        errors.append({"loc": loc, "msg": _schema_message(error), "type": f"jsonschema.{error.validator}"})
    return errors


def _secret_values(spec: dict[str, Any], configuration: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for name, prop in spec.get("properties", {}).items():
        value = configuration.get(name)
        if isinstance(prop, dict) and prop.get("airbyte_secret") and isinstance(value, str):
            found.append(value)
        elif isinstance(prop, dict) and isinstance(value, dict):
            found.extend(_secret_values(prop, value))
    return found


def provision(
    rt: Runtime, tenant: str, source_id: int, configuration: dict[str, Any], base_url: str
) -> ProvisionResult:
    with rt.store.lock:
        src = rt.airbyte_source(tenant, source_id)
        ab = src.airbyte
        assert ab is not None
        provider = rt.provider_of(src)
        spec = provider.connection_specification
        errors = validate_configuration(spec, configuration, partial=provider.auth_mode == "oauth")
        if errors:
            raise ApiError(422, errors)
        now = rt.now()
        fingerprint = hashlib.sha256(
            json.dumps(configuration, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        rt.store.put(
            CredentialRec(
                source_id=src.source_id,
                tenant_id=tenant,
                configuration=configuration,
                fingerprint=fingerprint,
                updated_at=now,
            )
        )
        ab.airbyte_destination_id = f"dst_{src.source_id}"
        ab.destination_status = "ready"
        consent_url = None
        if provider.auth_mode == "api_key":
            ab.airbyte_source_id = f"airbyte_src_{src.source_id}"
            # A secret containing "invalid" stands in for a credential Airbyte's connection check rejects.
            rejected = any("invalid" in value.lower() for value in _secret_values(spec, configuration))
            ab.credential_status = "failed" if rejected else "ready"
        else:
            assert provider.oauth_mode in ("airbyte", "splendor")
            state = OAuthStateRec(
                state=secrets.token_urlsafe(18),
                tenant_id=tenant,
                source_id=src.source_id,
                mode=provider.oauth_mode,
                created_at=now,
            )
            rt.store.put(state)
            ab.credential_status = "pending_oauth"
            consent_url = f"{base_url.rstrip('/')}/_emulator/oauth/consent/{state.state}"
        src.updated_at = now
        rt.store.put(src)
        return ProvisionResult(airbyte=airbyte_state(src), source=source_item(src), consent_url=consent_url)


def approve_consent(rt: Runtime, state_id: str, approve: bool) -> tuple[OAuthStateRec, dict[str, str]]:
    """The admin's click on the consent page. Returns the query parameters for the redirect."""
    with rt.store.lock:
        state = rt.store.get(OAuthStateRec, state_id)
        if state is None:
            raise not_found("Consent request")
        if state.approved_at is not None or state.denied_at is not None:
            raise ApiError(410, "This consent link has already been used")
        now = rt.now()
        if not approve:
            state.denied_at = now
            rt.store.put(state)
            return state, {"error": "access_denied", "state": state.state}
        state.approved_at = now
        src = rt.store.get(SourceRec, state.source_id)
        if state.mode == "airbyte":
            secret = OAuthSecretRec(
                secret_id=f"sec_{secrets.token_urlsafe(18)}",
                tenant_id=state.tenant_id,
                source_id=state.source_id,
                created_at=now,
            )
            state.secret_id = secret.secret_id
            rt.store.put(secret)
            rt.store.put(state)
            return state, {"secret_id": secret.secret_id, "state": state.state}
        # Splendor-run OAuth: Splendor itself receives the tokens, so credentials are ready at once.
        if src is not None and src.airbyte is not None:
            src.airbyte.credential_status = "ready"
            src.airbyte.airbyte_source_id = f"airbyte_src_{src.source_id}"
            src.updated_at = now
            rt.store.put(src)
        rt.store.put(state)
        return state, {"status": "ready", "state": state.state}


def complete_oauth(rt: Runtime, tenant: str, source_id: int, secret_id: str) -> AirbyteSourceResult:
    with rt.store.lock:
        src = rt.airbyte_source(tenant, source_id)
        ab = src.airbyte
        assert ab is not None
        secret = rt.store.get(OAuthSecretRec, secret_id)
        if secret is None or secret.tenant_id != tenant or secret.source_id != src.source_id:
            raise invalid(["body", "secret_id"], "Unknown OAuth secret_id for this source")
        if secret.used_at is not None:
            raise invalid(["body", "secret_id"], "This OAuth secret_id has already been used")
        now = rt.now()
        secret.used_at = now
        rt.store.put(secret)
        ab.credential_status = "ready"
        ab.airbyte_source_id = f"airbyte_src_{src.source_id}"
        src.updated_at = now
        rt.store.put(src)
        return result(src)


def _require_ready(src: SourceRec) -> None:
    assert src.airbyte is not None
    if src.airbyte.credential_status != "ready":
        raise conflict(
            "credentials_not_ready",
            f"Credentials of source {src.source_id} are '{src.airbyte.credential_status}', not 'ready'",
            credential_status=src.airbyte.credential_status,
        )


def discover_schema(rt: Runtime, tenant: str, source_id: int) -> DiscoverSchemaResult:
    src = rt.airbyte_source(tenant, source_id)
    _require_ready(src)
    provider = rt.provider_of(src)
    return DiscoverSchemaResult(
        streams=[
            StreamSchema(
                name=s.name,
                fields=[StreamField(name=f.name, type=f.type) for f in s.fields],
                supported_sync_modes=s.supported_sync_modes,
            )
            for s in provider.streams
        ]
    )


def create_connection(
    rt: Runtime, tenant: str, source_id: int, body: CreateConnectionRequest | None
) -> AirbyteSourceResult:
    with rt.store.lock:
        src = rt.airbyte_source(tenant, source_id)
        ab = src.airbyte
        assert ab is not None
        _require_ready(src)
        if ab.airbyte_connection_id is not None:
            return result(src)  # already connected: the existing connection, unchanged
        if body is not None and body.streams is not None:
            _check_streams(rt.provider_of(src), body.streams, "streams")
            ab.streams = list(body.streams)
        ab.airbyte_connection_id = f"conn_{src.source_id}"
        src.updated_at = rt.now()
        rt.store.put(src)
        return result(src)


# --- runs ---------------------------------------------------------------------------------------------------


def start_sync(rt: Runtime, tenant: str, source_id: int, body: SyncRequest | None) -> RunEnvelope:
    trigger = body.trigger if body is not None else "manual"
    with rt.store.lock:
        src = rt.airbyte_source(tenant, source_id)
        ab = src.airbyte
        assert ab is not None
        if ab.airbyte_connection_id is None:
            raise conflict("no_connection", f"Source {source_id} has no Airbyte connection yet")
        if not src.enabled:
            raise conflict(
                "connection_inactive", f"Source {source_id} is disabled; its connection is inactive"
            )
        _require_ready(src)
        active = rt.active_run(src.source_id)
        if active is not None:
            raise conflict(
                "sync_in_progress",
                f"Run {active.run_id} of source {source_id} is still in progress",
                run_id=active.run_id,
            )
        now = rt.now()
        run = plan_run(
            run_id=rt.store.next_id("run"),
            source=src,
            provider=rt.provider_of(src),
            streams=list(ab.streams),
            trigger=trigger,
            now=now,
            config=rt.config,
            faults=rt.faults,
        )
        rt.add_run(run)
        return RunEnvelope(run=run_item(run, now))


def read_run(rt: Runtime, tenant: str, run_id: int) -> RunEnvelope:
    run = rt.run(tenant, run_id)
    rt.settle(run)
    return RunEnvelope(run=run_item(run, rt.now()))


def list_runs(rt: Runtime, tenant: str, source_id: int, limit: int) -> RunList:
    """The source's runs, newest first: what a pipeline that lost a start-sync answer needs to find
    the run it may have started."""
    src = rt.airbyte_source(tenant, source_id)
    runs = sorted(rt.runs_of(src.source_id), key=lambda r: r.run_id, reverse=True)[:limit]
    now = rt.now()
    for run in runs:
        rt.settle(run)
    return RunList(runs=[run_item(run, now) for run in runs])


def cancel_run(rt: Runtime, tenant: str, run_id: int) -> RunEnvelope:
    with rt.store.lock:
        run = rt.run(tenant, run_id)
        now = rt.now()
        status = view_run(run, now).status
        if status in ("succeeded", "failed", "cancelled"):
            rt.settle(run)
            raise conflict(
                "run_not_active", f"Run {run_id} is already {status}", run_id=run_id, status=status
            )
        run.cancelled_at = now
        rt.store.put(run)
        return RunEnvelope(run=run_item(run, now))


def _queue_object(
    rt: Runtime, src: SourceRec, run_id: int, bucket: str, key: str, etag: str | None, documents: int
) -> IngestRec:
    now = rt.now()
    rec = IngestRec(
        ingest_run_id=new_id("ing"),
        tenant_id=src.tenant_id,
        dataset_id=src.dataset_id,
        source_id=src.source_id,
        connector_run_id=run_id,
        input_kind="connector_output",
        bucket=bucket,
        key=key,
        etag=etag,
        documents=documents,
        created_at=now,
        queued_at=now,
        step_s=rt.config.ingest_seconds,
        error_code=rt.faults.take_ingest_error(src.tenant_id, src.source_key),
    )
    rt.store.put(rec)
    return rec


def _requeue_repairable(rt: Runtime, src: SourceRec, run: RunRec, now: float) -> None:
    """The contract's repair rule: enqueueing a run again queues afresh each object whose ingest run
    failed with a repairable error, and marks the failed run superseded. Runs that are ready, in flight
    or failed for good are returned as they are, so a second enqueue never duplicates anything."""
    changed = False
    for index, ingest_id in enumerate(run.ingest_run_ids):
        old = rt.store.get(IngestRec, ingest_id)
        if old is None or view_ingest(old, now).status != "failed":
            continue
        if old.error_code is None or not INGEST_ERRORS[old.error_code][1]:
            continue
        rec = _queue_object(rt, src, run.run_id, old.bucket, old.key, old.etag, old.documents)
        old.superseded_at = now
        rt.store.put(old)
        run.ingest_run_ids[index] = rec.ingest_run_id
        changed = True
    if changed:
        rt.store.put(run)


def enqueue_ingest(rt: Runtime, tenant: str, source_id: int, run_id: int | None) -> EnqueueIngestResult:
    with rt.store.lock:
        src = rt.airbyte_source(tenant, source_id)
        runs = rt.runs_of(src.source_id)
        for candidate in runs:
            rt.settle(candidate)
        now = rt.now()
        if run_id is not None:
            run: RunRec | None = next((r for r in runs if r.run_id == run_id), None)
            if run is None:
                raise not_found("Run")
            if view_run(run, now).status != "succeeded" or not run.files:
                raise conflict("no_landed_data", f"Run {run_id} has not landed any data", run_id=run_id)
        else:
            landed = [r for r in runs if view_run(r, now).status == "succeeded" and r.files]
            if not landed:
                raise conflict("no_landed_data", f"Source {source_id} has no succeeded run with landed data")
            run = max(landed, key=lambda r: r.run_id)
        if not run.ingest_run_ids:
            for landed_file in run.files:
                rec = _queue_object(
                    rt,
                    src,
                    run.run_id,
                    landed_file.bucket,
                    landed_file.key,
                    landed_file.etag,
                    landed_file.records,
                )
                run.ingest_run_ids.append(rec.ingest_run_id)
            rt.store.put(run)
        else:
            _requeue_repairable(rt, src, run, now)
        items = [rt.store.get(IngestRec, i) for i in run.ingest_run_ids]
        return EnqueueIngestResult(ingest_runs=[ingest_item(i, now) for i in items if i is not None])
