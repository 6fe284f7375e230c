"""How Prefect tasks and flows run engine steps: a client from the credentials, the system clock, the
run history under PREFECT_HOME, and a reporter that turns the engine's reports into run logs, Prefect
events and a progress artifact."""

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.settings import PREFECT_HOME

from splendor_flows.engine.context import SourceContext
from splendor_flows.engine.history import RunHistory, history_path
from splendor_flows.engine.report import Event, Level
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.run_records import run_records
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.secret_masking import masked
from splendor_flows.orchestration.splendor_clients import open_client

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class PrefectReporter:
    """Publishes what the engine reports from inside a flow or task run.

    `progress` names the progress artifact (key, description) a wait keeps up to date; without it
    progress goes nowhere. `min_level` drops chattier logs where many sources share one run.
    """

    def __init__(
        self, scope: Scope, *, progress: tuple[str, str] | None = None, min_level: Level = "info"
    ) -> None:
        self.scope = scope
        self.logger = get_run_logger()
        self._progress = progress
        self._progress_id: UUID | None = None
        self._min_level = _LEVELS[min_level]

    def step(self, name: str, run_id: int | None = None) -> None:
        """A task is its own step: Prefect already shows which one ran and failed."""

    def log(self, level: Level, message: str) -> None:
        if _LEVELS[level] >= self._min_level:
            # Messages may quote a Splendor run's error, which may quote a secret.
            self.logger.log(_LEVELS[level], "%s", masked(message))

    def event(self, name: Event, payload: dict[str, Any]) -> None:
        emit(name, self.scope, payload)

    async def progress(self, percent: float) -> None:
        if self._progress is None:
            return
        if self._progress_id is None:
            key, description = self._progress
            self._progress_id = await acreate_progress_artifact(
                progress=percent, key=key, description=description
            )
        else:
            await aupdate_progress_artifact(self._progress_id, percent)


def run_history() -> RunHistory:
    """Durations of earlier runs, from SPLENDOR_RUN_HISTORY or under PREFECT_HOME."""
    return RunHistory(history_path(Path(PREFECT_HOME.value()) / "splendor")).load()


@contextlib.asynccontextmanager
async def step_context(
    scope: Scope,
    step: str,
    *,
    history: RunHistory | None = None,
    progress: tuple[str, str] | None = None,
    records: bool = False,
) -> AsyncIterator[SourceContext]:
    """What one step task runs the engine with; API errors escaping it are labelled `[step] source
    '<key>':` like the engine's own failures (`step` is that label, e.g. "ingest" for both ingest tasks).

    `records`: the step reads and writes start records (only the start of a sync does). Finding them
    may cost a Prefect API call (the server's default result storage), so other steps go without."""
    async with open_client(scope.credentials_block, step=step, source_key=scope.source_key) as client:
        report = PrefectReporter(scope, progress=progress)
        shared = await run_records() if records else None
        yield SourceContext(api=client, scope=scope, report=report, history=history, records=shared)
