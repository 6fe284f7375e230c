"""after_upload: what happens once `splendor.upload.completed` fires for a source.

1. A hosted upload (the event names its `upload_session_id`): follow its ingest run to `ready`.
2. An Airbyte-backed source with a connection: its bucket received new data, so hand the latest
   succeeded sync run to ingestion and wait until that is `ready`.

The event id is the checkpoint `sync_id`: a second delivery of the same event finds every step
finished and calls nothing; the API's own dedup of enqueue-ingest is the second layer.

Events of every tenant reach the trigger; the run acts only on one of the tenant its credentials are
for, and checks the event's `source_key` and `upload_session_id` before either goes into a URL path.
No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel

from splendor_api import NotFound, SplendorError
from splendor_flows.engine.errors import PermanentStepError, label_failure
from splendor_flows.engine.polling import PollOptions
from splendor_flows.orchestration.artifact_slugs import artifact_slug
from splendor_flows.orchestration.failure_masking import masks_failures
from splendor_flows.orchestration.source_lock import hold_source
from splendor_flows.orchestration.splendor_clients import load_config, open_client
from splendor_flows.source_pipeline import SOURCE_WAIT_SECONDS, resolve_scope
from splendor_flows.specs.source import validate_source_key
from splendor_flows.tasks.ingest import await_ingest_ready
from splendor_flows.tasks.uploads import (
    hand_off_latest,
    validate_upload_session_id,
    wait_upload_ready,
)


class AfterUploadSummary(BaseModel):
    source_key: str
    source_id: int
    event_id: str
    upload_session_id: str | None = None
    key: str | None = None
    upload_ingest_run_id: str | None = None
    upload_ingest_status: str | None = None
    handed_off_run_id: int | None = None
    ingest_run_ids: list[str] = []
    ingest_statuses: dict[str, str] = {}
    notes: list[str] = []


@flow(name="after-upload", log_prints=False)
@masks_failures
async def after_upload(
    source_key: str,
    upload_session_id: str | None = None,
    key: str | None = None,
    event_id: str | None = None,
    tenant: str | None = None,
    credentials_block: str | None = None,
    hand_off: bool = True,
    poll: PollOptions = PollOptions(),
) -> AfterUploadSummary:
    """Follow an upload to `ready`, then hand an Airbyte source's new data to ingestion.

    Args:
        source_key: the source that received the upload (the event's `splendor.source_key` label).
        upload_session_id: the hosted upload session (event payload); empty when data landed another way.
        key: object key of the upload (event payload), for the record.
        event_id: id of the triggering event; re-delivery of the same id does nothing twice.
        tenant: tenant of the triggering event (its `splendor.tenant` label), required with
            `event_id`; an event without it, or of another tenant than the credentials', is refused.
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        hand_off: for Airbyte sources, enqueue ingestion of the latest succeeded sync run.
        poll: how to poll upload readiness and ingest runs.
    """
    logger = get_run_logger()
    validate_source_key(source_key)
    if upload_session_id:
        validate_upload_session_id(upload_session_id, source_key=source_key)
    await _check_tenant(source_key, tenant, event_id, credentials_block)
    scope = await resolve_scope(source_key, event_id, credentials_block)
    async with open_client(credentials_block) as client:
        source = await client.find_source(source_key)
        if source is None:
            raise PermanentStepError("after-upload", source_key, "no such source in the tenant")
        connection_id = None
        if source.connector_id is not None:
            try:
                connection_id = (
                    await client.get_airbyte_source(source.source_id)
                ).airbyte.airbyte_connection_id
            except NotFound:
                connection_id = None
    summary = AfterUploadSummary(
        source_key=source_key,
        source_id=source.source_id,
        event_id=scope.sync_id,
        upload_session_id=upload_session_id,
        key=key,
    )

    if upload_session_id:
        ready = await wait_upload_ready(scope, upload_session_id, poll)
        summary.upload_ingest_run_id = ready.ingest_run_id
        summary.upload_ingest_status = ready.ingest_status
    else:
        summary.notes.append("the event named no upload session: nothing to follow")

    if hand_off and connection_id:
        # The hand-off reads and enqueues the source's latest run: held, so a sync of the source never
        # hands the same run over at the same moment.
        async with hold_source(scope, wait_seconds=SOURCE_WAIT_SECONDS):
            handed = await hand_off_latest(scope, source.source_id)
        if handed.skipped_reason:
            summary.notes.append(f"hand-off skipped: {handed.skipped_reason}")
        elif handed.ingest_run_ids:
            result = await await_ingest_ready(scope, handed.run_id or 0, handed.ingest_run_ids, poll)
            summary.handed_off_run_id = handed.run_id
            summary.ingest_run_ids = result.ingest_run_ids
            summary.ingest_statuses = result.statuses
    elif hand_off:
        summary.notes.append("not an Airbyte source with a connection: no hand-off")

    await _publish(summary)
    logger.info("after-upload for %s done: %s", source_key, summary.model_dump(exclude_defaults=True))
    return summary


async def _check_tenant(
    source_key: str, tenant: str | None, event_id: str | None, credentials_block: str | None
) -> None:
    """Refuse an event of another tenant, or one that does not say its tenant, before any call: the
    same source_key in this tenant would be someone else's source. A run started by hand (no event)
    acts on the credentials' tenant."""
    try:
        configured = (await load_config(credentials_block)).tenant
    except SplendorError as exc:
        label_failure(exc, "preflight", source_key)
        raise
    if not tenant:
        if event_id is None:
            return
        raise PermanentStepError(
            "after-upload",
            source_key,
            f"tenant: the event names no tenant (event {event_id}), so it cannot be checked against the "
            f"credentials' tenant {configured!r}; nothing was called",
            "pass the event's splendor.tenant label as the `tenant` parameter (the deployment's trigger "
            "in prefect.yaml does), and emit upload events with that label",
        )
    if tenant != configured:
        raise PermanentStepError(
            "after-upload",
            source_key,
            f"the event is for tenant {tenant!r} but the credentials are for tenant {configured!r}; "
            "nothing was called",
            "let each tenant's deployment match only its own tenant's events (splendor.tenant)",
        )


async def _publish(summary: AfterUploadSummary) -> None:
    rows: list[tuple[str, Any]] = [
        ("source", f"`{summary.source_key}` ({summary.source_id})"),
        ("event id (dedup key)", f"`{summary.event_id}`"),
        ("upload session", summary.upload_session_id),
        ("object key", summary.key),
        ("upload ingest", f"{summary.upload_ingest_run_id} → {summary.upload_ingest_status}"),
        ("hand-off run", summary.handed_off_run_id),
        ("hand-off ingest", ", ".join(f"{k}: {v}" for k, v in summary.ingest_statuses.items()) or "-"),
    ]
    table = "\n".join(f"| {name} | {value if value is not None else '-'} |" for name, value in rows)
    notes = "\n".join(f"- {n}" for n in summary.notes) or "- none"
    await acreate_markdown_artifact(
        markdown=(
            f"# After upload: `{summary.source_key}`\n\n| | |\n|---|---|\n{table}\n\n## Notes\n\n{notes}\n"
        ),
        key=f"splendor-after-upload-{artifact_slug(summary.source_key)}",
        description="What the last upload of this source triggered",
    )
