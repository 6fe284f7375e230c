"""Prefect events the pipelines publish, for automations (design §6).

Every event goes out through `emit`: resource id `splendor.source.<tenant>.<source_key>` with the
tenant and source key as labels, a payload of ids, counts, statuses and error texts, plus the
pipeline's `sync_id` and the Prefect flow run it came from (what a notification links to). Error
texts can quote what an upstream was given, so every payload is masked (`secret_masking`) before it
leaves the process.
"""

import uuid
from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

from splendor_flows.engine.report import Event
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.secret_masking import masked_payload


def event_payload(scope: Scope, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an event carries: the pipeline's ids first, then the step's fields, secrets masked."""
    run_id = flow_run.get_id()
    body: dict[str, Any] = {
        "tenant": scope.tenant,
        "source_key": scope.source_key,
        "sync_id": scope.sync_id,
        "flow_run_id": str(run_id) if run_id else None,
        **(payload or {}),
    }
    return masked_payload(body)


def emit(
    name: Event, scope: Scope, payload: dict[str, Any] | None = None, *, event_id: uuid.UUID | None = None
) -> None:
    emit_event(
        event=str(name),
        resource={
            "prefect.resource.id": scope.resource_id,
            "splendor.tenant": scope.tenant,
            "splendor.source_key": scope.source_key,
        },
        payload=event_payload(scope, payload),
        id=event_id,
    )
