"""Fleet sync (work in progress)."""

from typing import Literal

from pydantic import BaseModel

from tasks.polling import PollOptions


class FleetOptions(BaseModel):
    connectors_file: str
    only: list[str] | None = None
    max_concurrency: int = 50
    credentials_block: str | None = None
    sync_id: str | None = None
    trigger: Literal["manual", "scheduled", "backfill"] = "scheduled"
    max_sync_attempts: int = 2
    poll: PollOptions = PollOptions()
    wait_for_ingest: bool = False
    concurrency_limit: str | None = "splendor-api"


class FleetSummary(BaseModel):
    sync_id: str = ""


async def run_fleet(options: FleetOptions) -> FleetSummary:
    raise NotImplementedError
