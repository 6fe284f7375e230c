"""Prefect events the pipelines publish, for automations (design §6).

Resource id: splendor.source.<tenant>.<source_key>. Payloads carry ids and counts only.
"""

from typing import Any

from prefect.events import emit_event

from tasks.checkpoint import Scope


def emit(name: str, scope: Scope, payload: dict[str, Any] | None = None) -> None:
    emit_event(
        event=name,
        resource={
            "prefect.resource.id": scope.resource_id,
            "splendor.tenant": scope.tenant,
            "splendor.source_key": scope.source_key,
        },
        payload={"sync_id": scope.sync_id, **(payload or {})},
    )
