"""Checkpoints: the Prefect cache policy and retry rule shared by every pipeline step.

A step's checkpoint is its persisted JSON result under a key built from
(version, step, tenant, source_key, sync_id[, attempt or run id]). The flow-run id and the task's
source code are deliberately left out: a UI "Retry" (same run) and a new run given the same
`sync_id` both find the finished steps, and a bug fix deployed between failure and retry does not
throw them away. Bump CACHE_VERSION to invalidate every checkpoint on purpose.
"""

import hashlib
from datetime import timedelta
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from pydantic import BaseModel

from splendor_api import SplendorError
from splendor_flows.engine.errors import DeadlineExceeded, PermanentStepError
from splendor_flows.specs.source import safe_slug

CACHE_VERSION = "v1"
CHECKPOINT_TTL = timedelta(days=14)


class Scope(BaseModel):
    """Identifies one pipeline execution; every step takes it as its first argument."""

    tenant: str
    source_key: str
    sync_id: str
    credentials_block: str | None = None

    @property
    def resource_id(self) -> str:
        return f"splendor.source.{self.tenant}.{self.source_key}"


def checkpoint_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
    scope: Scope = inputs["scope"]
    step = ctx.task.name
    # Steps that happen more than once per sync (a re-started sync, its poll) add their ordinal.
    extra = "".join(f"-{name}{inputs[name]}" for name in ("attempt", "run_id") if name in inputs)
    raw = f"{CACHE_VERSION}|{scope.tenant}|{scope.source_key}|{scope.sync_id}|{step}{extra}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return (
        f"splendor-{CACHE_VERSION}/{safe_slug(scope.tenant)}/{safe_slug(scope.source_key)}/"
        f"{safe_slug(scope.sync_id)}/{step}{safe_slug(extra)}-{digest}"
    )


CHECKPOINT = CachePolicy.from_cache_key_fn(checkpoint_key)


async def retry_only_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Refuse a Prefect retry when the HTTP layer already retried or the error is permanent.

    Without this the two layers multiply: 6 HTTP attempts x 3 task attempts on every outage.
    """
    try:
        await state.aresult()
    except (PermanentStepError, DeadlineExceeded):
        return False
    except SplendorError as exc:
        return not exc.permanent
    except Exception:
        return True
    return False


STEP_OPTIONS: dict[str, Any] = dict(
    cache_policy=CHECKPOINT,
    persist_result=True,
    result_serializer="json",
    cache_expiration=CHECKPOINT_TTL,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_only_transient,
)
