"""Pipeline-level failures: each names the step, the source and what to do about it."""

from splendor_api import SplendorError


class StepError(Exception):
    """A pipeline step could not finish. The message is meant for the operator."""

    def __init__(self, step: str, source_key: str, message: str, hint: str | None = None) -> None:
        self.step = step
        self.source_key = source_key
        # The bare message, for callers with no source to name (the CLI's discovery commands).
        self.detail = message
        self.hint = hint
        text = f"[{step}] source '{source_key}': {message}"
        if hint:
            text += f" — {hint}"
        super().__init__(text)


class PermanentStepError(StepError):
    """Retrying will not help (bad spec, bad credentials, unknown status...): fix the input first."""


class SpecError(PermanentStepError):
    """The source spec or the flow parameters are invalid; nothing was changed remotely."""

    def __init__(self, source_key: str, message: str) -> None:
        super().__init__("validate", source_key, message, "fix the spec; nothing was changed in Splendor")


class DeadlineExceeded(StepError):
    """A wait hit its deadline. The remote run goes on; resuming with the same sync_id re-attaches.

    Not retried by Prefect: a retry would silently extend the deadline the user chose.
    """


def is_transient(exc: BaseException) -> bool:
    """Whether another try of a failed step could succeed.

    False for the pipeline's own verdicts (a StepError is permanent, a deadline the user chose, or the
    sync attempts spent), for API errors that say so (4xx, and retries the HTTP layer already spent:
    trying again would multiply its attempts), and for a value a model refused (pydantic's
    ValidationError is a ValueError: the same input fails the same way every time). True for the rest:
    an unknown outcome, a Prefect API or storage failure, a dropped connection.
    """
    if isinstance(exc, StepError):
        return False
    if isinstance(exc, SplendorError):
        return not exc.permanent
    return not isinstance(exc, ValueError)


def label_failure(exc: SplendorError, step: str, source_key: str) -> None:
    """Prefix an API error escaping a step with "[step] source 'key': ", like StepError's messages.

    The type and attributes stay as they are (retry rules and callers branch on them); only the text
    an operator reads in the failed run gains the step and the source it belongs to.
    """
    text = str(exc)
    if not text.startswith("["):
        exc.args = (f"[{step}] source '{source_key}': {text}",)


# One wording per remedy, whichever flow or command hit the failure.
CONNECT_FIRST = (
    "connect it first: the connect-source flow (`splendor-flows connect SPEC.yaml`), "
    "or `splendor-flows apply` for a connectors file"
)


def resume_hint(sync_id: str) -> str:
    """How to continue a pipeline: every route to a resume takes the same sync_id."""
    return f"resume with sync_id={sync_id} (Retry in the Prefect UI, or a new run given that sync_id)"
