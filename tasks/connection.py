"""Step 4: make sure the Airbyte connection exists. Reads the source state before creating."""

from prefect import get_run_logger, task

from splendor_api import Conflict, OutcomeUnknown
from splendor_api.models import ConnectionStatus
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.report import Event
from splendor_flows.engine.results import ConnectionRef
from splendor_flows.orchestration.checkpoint import step_options
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client


@task(name="connect", **step_options("connect", inputs=("source_id", "streams")))
async def ensure_connection(scope: Scope, source_id: int, streams: list[str] | None = None) -> ConnectionRef:
    logger = get_run_logger()
    async with open_client(scope.credentials_block) as client:
        state = (await client.get_airbyte_source(source_id)).airbyte
        if state.airbyte_connection_id and state.connection_status == ConnectionStatus.ACTIVE:
            if streams and state.streams and sorted(streams) != sorted(state.streams):
                # The API cannot change a connection's streams in place; syncing the old set while the
                # spec says otherwise would be a silent lie.
                raise PermanentStepError(
                    "connect",
                    scope.source_key,
                    f"streams: the spec asks for {', '.join(sorted(streams))} but the connection syncs "
                    f"{', '.join(sorted(state.streams))}",
                    "keep the connection's streams in the spec, or onboard the new set as another source_key",
                )
            logger.info("Connection %s already active", state.airbyte_connection_id)
            return ConnectionRef(
                source_id=source_id, connection_id=state.airbyte_connection_id, created=False
            )
        try:
            result = await client.create_connection(source_id, streams)
        except Conflict as exc:
            if exc.code == "credentials_not_ready":
                raise PermanentStepError(
                    "connect",
                    scope.source_key,
                    "credentials are not ready",
                    "re-run the provision step (force)",
                ) from None
            raise
        except OutcomeUnknown:
            state = (await client.get_airbyte_source(source_id)).airbyte
            if not state.airbyte_connection_id:
                raise
            return _created(scope, source_id, state.airbyte_connection_id, streams)
    connection_id = result.airbyte.airbyte_connection_id
    if not connection_id:
        raise PermanentStepError("connect", scope.source_key, "Splendor returned no airbyte_connection_id")
    if result.airbyte.connection_status == ConnectionStatus.INACTIVE:
        raise PermanentStepError(
            "connect",
            scope.source_key,
            "the connection is inactive (the source is disabled)",
            "enable the source, then resume",
        )
    logger.info("Created connection %s", connection_id)
    return _created(scope, source_id, connection_id, streams)


def _created(scope: Scope, source_id: int, connection_id: str, streams: list[str] | None) -> ConnectionRef:
    # An empty list means the connector's default streams.
    emit(
        Event.CONNECTION_CREATED,
        scope,
        {"source_id": source_id, "connection_id": connection_id, "streams": streams or []},
    )
    return ConnectionRef(source_id=source_id, connection_id=connection_id, created=True)
