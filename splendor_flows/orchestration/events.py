"""Prefect events the pipelines publish, for automations (design §6).

Resource id: splendor.source.<tenant>.<source_key>. Payloads carry ids and counts only.
"""

from typing import Any

from prefect.events import emit_event

from splendor_flows.orchestration.checkpoint import Scope


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


def artifact_slug(source_key: str) -> str:
    """A source key as Prefect artifact keys allow it (lowercase letters, digits and dashes only)."""
    return "".join(c if c.isalnum() else "-" for c in source_key.lower())
