"""Loopback control endpoints under `/_emulator/` (no Splendor auth): counters, mutations, faults, state."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from splendor_emulator.auth import runtime_of
from splendor_emulator.errors import ApiError
from splendor_emulator.faults import FaultSpec

router = APIRouter(prefix="/_emulator", include_in_schema=False)

CONTROL_PREFIX = "/_emulator/"
# The consent pages live under the same prefix but are part of the traffic a pipeline causes, so they are
# counted and can be faulted like API routes.
COUNTED_CONTROL_PREFIX = "/_emulator/oauth/"


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    rt = runtime_of(request)
    return {
        "status": "ok",
        "tenants": [t.tenant_id for t in rt.config.tenants],
        "state_file": str(rt.store.path) if rt.store.path else None,
        "bucket_root": str(rt.bucket_root),
    }


@router.get("/counts")
async def counts(request: Request, route: Annotated[str | None, Query()] = None) -> dict[str, int]:
    return runtime_of(request).observer.counts(route)


@router.get("/mutations")
async def mutations(request: Request) -> dict[str, list[dict[str, Any]]]:
    return {"mutations": runtime_of(request).observer.mutations()}


@router.post("/reset-counters")
async def reset_counters(request: Request) -> dict[str, bool]:
    runtime_of(request).observer.reset()
    return {"reset": True}


@router.get("/faults")
async def list_faults(request: Request) -> dict[str, list[dict[str, Any]]]:
    return {"faults": [f.model_dump(mode="json") for f in runtime_of(request).faults.list()]}


@router.post("/faults")
async def add_fault(request: Request, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        fault = runtime_of(request).faults.add(FaultSpec.model_validate(spec))
    except ValidationError as exc:
        raise ApiError(
            422, [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        ) from None
    return fault.model_dump(mode="json")


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, int]:
    registry = runtime_of(request).faults
    cleared = len(registry.list())
    registry.clear()
    return {"cleared": cleared}


@router.get("/state")
async def state(request: Request, tenant: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    return runtime_of(request).snapshot(tenant)
