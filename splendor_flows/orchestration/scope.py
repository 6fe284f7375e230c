"""The identity of one pipeline execution, as the orchestration layer passes it to every step."""

import uuid

from prefect.runtime import flow_run
from pydantic import BaseModel


def default_sync_id(given: str | None = None) -> str:
    """The sync_id a pipeline keys its checkpoints and start records by: the one given (a resume, a
    Retry, a fleet's children), else this flow run's id (a Retry of the run then finds the same state),
    else, outside any flow run, a fresh one (never a shared constant: two runs would share state)."""
    return given or str(flow_run.get_id() or uuid.uuid4())


class Scope(BaseModel):
    """Identifies one pipeline execution; every step takes it as its first argument."""

    # The API the pipeline talks to: checkpoints and run records of one API never serve another.
    api_base: str
    tenant: str
    source_key: str
    sync_id: str
    credentials_block: str | None = None

    @property
    def resource_id(self) -> str:
        return f"splendor.source.{self.tenant}.{self.source_key}"
