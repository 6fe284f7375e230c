"""A flow decorator that keeps the secrets a run handled out of the run's failure message."""

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from splendor_flows.orchestration.secret_masking import mask_failure

P = ParamSpec("P")
R = TypeVar("R")


def masks_failures(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """A flow function whose failure never quotes a secret the run handled.

    Prefect turns the exception leaving a flow into the run's state message ("Flow run encountered an
    exception: StepError: [sync] ..."), which the UI and the run's logs show and the flow-run failure
    notification sends on; a Splendor run's error may quote the credential or the token it was given.
    Put it under `@flow` (the signature and docstring Prefect reads are the wrapped function's).
    """

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            mask_failure(exc)
            raise

    return run
