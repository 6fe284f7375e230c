"""The identity of one pipeline execution, as the orchestration layer passes it to every step."""

from pydantic import BaseModel


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
