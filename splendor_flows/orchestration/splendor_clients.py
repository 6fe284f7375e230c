"""Where tasks get their Splendor client: a Prefect block, or the environment.

Clients are opened per task call and share one `RateGate` per (event loop, API, tenant) from the
runtime context, so a 503 `Retry-After` seen by one pipeline slows every pipeline of the process that
talks to the same tenant instead of each one hammering alone.
"""

import contextlib
from collections.abc import AsyncIterator

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from splendor_api import ConfigError, SplendorClient, SplendorConfig, SplendorError
from splendor_api.config import tuning_from_env
from splendor_flows.engine.errors import label_failure
from splendor_flows.orchestration.runtime import current_runtime, shared_gate
from splendor_flows.orchestration.secret_masking import remember_secrets


class SplendorCredentials(Block):
    """API access to one Splendor tenant: base URL, tenant id and an admin token or tenant API key."""

    _block_type_name = "Splendor Credentials"
    _block_type_slug = "splendor-credentials"
    _description = "Base URL, tenant and token for the Splendor admin API."

    api_base: str = Field(default="https://api.withsplendor.com", description="Splendor API base URL.")
    tenant_id: str | None = Field(
        default=None, description="Tenant id (not needed with a tenant API key 'spltk.v1.…')."
    )
    token: SecretStr = Field(description="Tenant-admin bearer token or tenant API key.")

    def to_config(self) -> SplendorConfig:
        return SplendorConfig(api_base=self.api_base, tenant_id=self.tenant_id, token=self.token)


async def load_config(credentials_block: str | None) -> SplendorConfig:
    """The named block when given, else SPLENDOR_API_BASE / SPLENDOR_TENANT_ID / SPLENDOR_TOKEN.

    Every client's configuration passes here, so this is where the token joins the secrets that the
    events of this context are masked against.
    """
    config = await _read_config(credentials_block)
    remember_secrets([config.token.get_secret_value()])
    return config


async def _read_config(credentials_block: str | None) -> SplendorConfig:
    if credentials_block:
        try:
            # aload's return type is Prefect's generic Block; this class is what it loads.
            block: SplendorCredentials = await SplendorCredentials.aload(credentials_block)
        except ValueError as exc:
            raise ConfigError(
                f"credentials_block: no Splendor Credentials block named {credentials_block!r} "
                "(create it in the UI under Blocks, or leave it empty to use SPLENDOR_* variables)"
            ) from exc
        return block.to_config().with_tuning(tuning_from_env())
    return SplendorConfig.from_env()


def _step_of_current_task() -> tuple[str, str] | None:
    """(step, source_key) when called from a pipeline step: the task's name and its scope argument."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    scope = ctx.parameters.get("scope") if ctx is not None else None
    source_key = getattr(scope, "source_key", None)
    if ctx is None or not isinstance(source_key, str):
        return None
    return ctx.task.name, source_key


@contextlib.asynccontextmanager
async def open_client(
    credentials_block: str | None, *, step: str | None = None, source_key: str | None = None
) -> AsyncIterator[SplendorClient]:
    """A client for one step. API errors escaping the block name the step and source they hit
    (given here, or taken from the running task), so a failed run says where it stopped."""
    try:
        config = await load_config(credentials_block)
        async with SplendorClient(
            config, gate=shared_gate(config), transport=current_runtime().transport
        ) as client:
            yield client
    except SplendorError as exc:
        where = (step, source_key) if step and source_key else _step_of_current_task()
        if where is not None:
            label_failure(exc, *where)
        raise
