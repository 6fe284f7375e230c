"""The task retry rule: Prefect retries only what another try can fix."""

from typing import Any

import httpx
import pytest
from prefect.states import exception_to_failed_state
from pydantic import BaseModel, ValidationError

from splendor_api import OutcomeUnknown, Unauthorized
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.orchestration.checkpoint import retry_only_transient


class _Strict(BaseModel):
    count: int


def _validation_error() -> ValidationError:
    try:
        _Strict.model_validate({"count": "many"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (PermanentStepError("sync", "k", "gone"), False),
        (Unauthorized(status=401, method="GET", path="/x", detail="expired"), False),
        (_validation_error(), False),
        (OutcomeUnknown(method="POST", path="/x", route="start_sync", cause=httpx.ReadTimeout("t")), True),
        (RuntimeError("something odd"), True),
    ],
)
async def test_retry_only_what_another_try_can_fix(error: Exception, retried: bool) -> None:
    state = await exception_to_failed_state(error)
    task: Any = None
    assert await retry_only_transient(task, task, state) is retried
