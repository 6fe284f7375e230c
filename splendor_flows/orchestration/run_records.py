"""Start records kept as Prefect Variables: the one store every worker of a Prefect server shares.

Result storage may be local to a worker; the Prefect API never is. One variable per pipeline, named
from a digest of (API base, tenant, source key, sync_id), tagged so they can be listed and pruned.
Values hold run ids and timestamps only.
"""

import asyncio
import hashlib

from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable

from splendor_flows.engine.run_records import PipelineRuns

TAG = "splendor-run-record"
PREFIX = "splendor-run-"


def pipeline_key(api_base: str, tenant: str, source_key: str, sync_id: str) -> str:
    digest = hashlib.sha256(f"{api_base}|{tenant}|{source_key}|{sync_id}".encode()).hexdigest()[:32]
    return f"{PREFIX}{digest}"


class PrefectRunRecords:
    async def read(self, pipeline: str) -> PipelineRuns:
        async with get_client() as client:
            variable = await client.read_variable_by_name(pipeline)
        return PipelineRuns.model_validate(variable.value) if variable and variable.value else PipelineRuns()

    async def write(self, pipeline: str, runs: PipelineRuns) -> None:
        await Variable.aset(pipeline, runs.model_dump(mode="json"), tags=[TAG], overwrite=True)


async def aforget_all_run_records() -> int:
    """Delete every start record (used by the soak's sabotage mode and by operators who reset)."""
    forgotten = 0
    async with get_client() as client:
        while True:  # the filter endpoint pages; delete until a page holds no record
            names = [v.name for v in await client.read_variables() if v.name.startswith(PREFIX)]
            if not names:
                return forgotten
            for name in names:
                await client.delete_variable_by_name(name)
            forgotten += len(names)


def forget_all_run_records(api_url: str) -> int:
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(aforget_all_run_records())
