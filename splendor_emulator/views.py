"""Turning stored records into the documented response items. Secrets (credentials, external ids, ingest token
hashes) never pass through here."""

from datetime import UTC, datetime
from typing import Any, overload

from splendor_emulator.ingest import INGEST_ERRORS, view_ingest
from splendor_emulator.models import (
    AirbyteSourceState,
    ConnectorItem,
    ConnectorRunItem,
    DocumentCounts,
    IngestRunItem,
    Lifecycle,
    ReadyFor,
    SourceItem,
)
from splendor_emulator.runs import view_run
from splendor_emulator.store import ConnectorRec, IngestRec, RunRec, SourceRec


@overload
def ts(value: float) -> datetime: ...
@overload
def ts(value: float | None) -> datetime | None: ...
def ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def source_item(rec: SourceRec) -> SourceItem:
    return SourceItem(
        source_id=rec.source_id,
        source_key=rec.source_key,
        source_type=rec.source_type,
        tenant_id=rec.tenant_id,
        name=rec.name,
        dataset_id=rec.dataset_id,
        bucket=rec.bucket,
        prefix=rec.prefix,
        format=rec.format,
        iam_role_arn=rec.iam_role_arn,
        intake_role_arn=rec.intake_role_arn,
        external_id_configured=rec.external_id_configured,
        connector_id=rec.connector_id,
        enabled=rec.enabled,
        retention_days=rec.retention_days,
        parse_config=rec.parse_config,
        transform_config=rec.transform_config,
        search_config=rec.search_config,
        semantic_config=rec.semantic_config,
        ingest_token_configured=rec.ingest_token_hash is not None and rec.ingest_token_revoked_at is None,
        ingest_token_created_at=ts(rec.ingest_token_created_at),
        ingest_token_last_used_at=ts(rec.ingest_token_last_used_at),
        ingest_token_revoked_at=ts(rec.ingest_token_revoked_at),
        created_at=ts(rec.created_at),
        updated_at=ts(rec.updated_at),
    )


def connection_status(rec: SourceRec) -> str:
    assert rec.airbyte is not None
    if rec.airbyte.airbyte_connection_id is None:
        return "none"
    return "active" if rec.enabled else "inactive"


def airbyte_state(rec: SourceRec) -> AirbyteSourceState:
    ab = rec.airbyte
    assert ab is not None
    return AirbyteSourceState(
        source_id=rec.source_id,
        provider_key=ab.provider_key,
        airbyte_source_definition_id=ab.source_definition_id,
        airbyte_source_definition_name=ab.source_definition_name,
        airbyte_source_id=ab.airbyte_source_id,
        airbyte_destination_id=ab.airbyte_destination_id,
        airbyte_connection_id=ab.airbyte_connection_id,
        credential_status=ab.credential_status,
        destination_status=ab.destination_status,
        connection_status=connection_status(rec),
        oauth_mode=ab.oauth_mode,
        schedule_type=ab.schedule_type,
        cron_expression=ab.cron_expression,
        stream_config={"streams": list(ab.streams)},
    )


def connector_item(rec: ConnectorRec) -> ConnectorItem:
    return ConnectorItem(
        connector_id=rec.connector_id,
        connector_key=rec.connector_key,
        connector_type=rec.connector_type,
        name=rec.name,
        config=rec.config,
        enabled=rec.enabled,
        tenant_id=rec.tenant_id,
        created_at=ts(rec.created_at),
        updated_at=ts(rec.updated_at),
    )


def run_item(rec: RunRec, now: float) -> ConnectorRunItem:
    view = view_run(rec, now)
    succeeded = view.status == "succeeded" and rec.landed
    return ConnectorRunItem(
        run_id=rec.run_id,
        source_id=rec.source_id,
        airbyte_job_id=f"job_{rec.run_id}",
        trigger=rec.trigger,
        status=view.status,
        records_synced=sum(f.records for f in rec.files) if succeeded else None,
        bytes_synced=sum(f.bytes for f in rec.files) if succeeded else None,
        error_message=rec.error_message if view.status == "failed" else None,
        created_at=ts(rec.created_at),
        started_at=ts(view.started_at),
        completed_at=ts(view.completed_at),
        updated_at=ts(view.updated_at),
    )


def ingest_item(rec: IngestRec, now: float) -> IngestRunItem:
    view = view_ingest(rec, now)
    docs, step = rec.documents, view.step
    failed = view.status == "failed"
    # A superseded run keeps the error it failed with; only a failed one is still repairable.
    code = rec.error_code if view.status in ("failed", "superseded") else None
    message, repairable = INGEST_ERRORS[code] if code is not None else (None, False)
    return IngestRunItem(
        ingest_run_id=rec.ingest_run_id,
        tenant_id=rec.tenant_id,
        dataset_id=rec.dataset_id,
        source_id=rec.source_id,
        connector_run_id=rec.connector_run_id,
        upload_session_id=rec.upload_session_id,
        input_kind=rec.input_kind,
        bucket=rec.bucket,
        key=rec.key,
        etag=rec.etag,
        status=view.status,
        lifecycle=Lifecycle(
            state=view.status,
            reasons=[code] if code is not None else [],
            repairable=failed and repairable,
        ),
        ready_for=ReadyFor(
            text_search=step >= 2 and code is None,
            sql_search=step >= 2 and code is None,
            semantic_search=step >= 4,
        ),
        documents=DocumentCounts(
            expected=docs,
            parsed=docs if step >= 2 else (docs // 2 if step == 1 else 0),
            schema_observed=docs if step >= 2 else 0,
            index_committed=docs if step >= 2 and code is None else 0,
            semantic_embedded=docs if step >= 4 else (docs // 2 if step == 3 else 0),
            semantic_total=docs if step >= 2 and code is None else 0,
        ),
        error_code=code,
        error_message=message,
        ingest_failure_id=f"dlq_{rec.ingest_run_id[4:]}" if code is not None else None,
        reindex_job_id=None,
        created_at=ts(rec.created_at),
        queued_at=ts(view.queued_at),
        started_at=ts(view.started_at),
        text_indexed_at=ts(view.text_indexed_at),
        semantic_ready_at=ts(view.semantic_ready_at),
        completed_at=ts(view.completed_at),
        failed_at=ts(view.failed_at),
        updated_at=ts(view.updated_at),
    )


def source_snapshot(rec: SourceRec) -> dict[str, Any]:
    item: dict[str, Any] = source_item(rec).model_dump(mode="json")
    if rec.airbyte is not None:
        item["airbyte"] = airbyte_state(rec).model_dump(mode="json")
    return item
