"""upload_files: push local files to a hosted source, resumable part by part, then announce them.

Each finished file emits `splendor.upload.completed`, which the `after-upload` deployment reacts to.
No `from __future__ import annotations` here (served runs resolve parameter types at runtime).
"""

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from pydantic import Field

from splendor_flows.engine.errors import PermanentStepError, SpecError
from splendor_flows.engine.uploads import DEFAULT_PART_SIZE
from splendor_flows.orchestration.artifact_slugs import artifact_slug
from splendor_flows.orchestration.failure_masking import masks_failures
from splendor_flows.orchestration.scope import Scope, default_sync_id
from splendor_flows.orchestration.splendor_clients import load_config, open_client
from splendor_flows.specs.source import validate_source_key
from splendor_flows.tasks.uploads import (
    UploadedFile,
    UploadInputError,
    emit_upload_completed,
    inspect_files,
    upload_file,
)


async def upload_scope(source_key: str, upload_id: str | None, credentials_block: str | None) -> Scope:
    """Like the pipelines' scope, but members may upload: check tenant access, not the admin role."""
    config = await load_config(credentials_block)
    tenant = config.tenant
    async with open_client(credentials_block) as client:
        me = await client.me()
    if not config.is_tenant_api_key and me.tenant(tenant) is None:
        raise PermanentStepError(
            "preflight",
            source_key,
            f"the token has no access to tenant {tenant}",
            "use a token of that tenant",
        )
    return Scope(
        api_base=config.api_base,
        tenant=tenant,
        source_key=source_key,
        sync_id=default_sync_id(upload_id),
        credentials_block=credentials_block,
    )


@flow(name="upload-files", log_prints=False)
@masks_failures
async def upload_files(
    source_key: str,
    paths: list[str],
    credentials_block: str | None = None,
    part_size: Annotated[int, Field(ge=1)] = DEFAULT_PART_SIZE,
    max_parallel_parts: Annotated[int, Field(ge=1, le=64)] = 4,
    upload_id: str | None = None,
    allow_empty: bool = False,
    force: bool = False,
) -> list[UploadedFile]:
    """Upload files through the hosted upload API and emit `splendor.upload.completed` for each.

    Args:
        source_key: key of the hosted source to upload to.
        paths: files to upload (paths on the machine that runs the flow).
        credentials_block: name of a Splendor Credentials block; empty uses SPLENDOR_* variables.
        part_size: part size in bytes when the API does not name one.
        max_parallel_parts: parts sent at the same time.
        upload_id: leave empty for a new upload; pass a failed run's upload_id to resume it.
        allow_empty: upload empty files instead of refusing them.
        force: open new upload sessions even when checkpoints exist.
    """
    logger = get_run_logger()
    validate_source_key(source_key)
    try:
        files = inspect_files(paths, allow_empty=allow_empty)
    except UploadInputError as exc:
        raise SpecError(source_key, str(exc)) from None
    scope = await upload_scope(source_key, upload_id, credentials_block)
    logger.info("Uploading %s file(s) to %s (upload_id=%s)", len(files), source_key, scope.sync_id)
    uploaded: list[UploadedFile] = []
    for file in files:
        done = await upload_file.with_options(refresh_cache=force)(
            scope, file, part_size, max_parallel_parts, force=force
        )
        event_id = emit_upload_completed(scope, done)
        logger.info(
            "%s → %s (%s, %s part(s)); event %s", file.filename, done.key, done.mode, done.parts, event_id
        )
        uploaded.append(done)
    await acreate_table_artifact(
        table=[
            {
                "file": u.filename,
                "bytes": u.bytes,
                "mode": u.mode,
                "parts": u.parts,
                "session": u.upload_session_id,
                "key": u.key,
                "ingest_run": u.ingest_run_id,
            }
            for u in uploaded
        ],
        key=f"splendor-upload-{artifact_slug(source_key)}",
        description=f"Files uploaded to {source_key} (upload_id {scope.sync_id})",
    )
    return uploaded
