"""What the CLI's console filter relies on (prefect_compat, "terminal handler of run logs" section).

The CLI keeps expected failures' tracebacks off the terminal with a filter on Prefect's console
handler, trusting that run logs reach the terminal only through it and reach the API through a
handler of their own. These tests fail when a Prefect upgrade changes that wiring.
"""

import logging

import pytest
from prefect import flow, task
from prefect.logging.handlers import APILogHandler

from splendor_flows.orchestration.prefect_compat import (
    RUN_LOGGERS,
    console_handlers,
    is_run_log,
    run_log_api_handlers,
)


class Boom(Exception):
    pass


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def handlers_reached(name: str) -> list[logging.Handler]:
    """Every handler a record logged on `name` passes through, in order (as Logger.callHandlers does)."""
    reached: list[logging.Handler] = []
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        reached.extend(logger.handlers)
        logger = logger.parent if logger.propagate else None
    return reached


def test_console_handlers_sit_on_the_root_logger() -> None:
    assert console_handlers(), "Prefect no longer installs its console handler on the root logger"


@pytest.mark.parametrize("name", RUN_LOGGERS)
def test_run_logs_reach_the_api_before_the_terminal(name: str) -> None:
    reached = handlers_reached(name)
    consoles = console_handlers()
    api = run_log_api_handlers()[name]
    assert api, f"{name} has no API log handler of its own"
    # Every terminal handler a run log reaches is one the CLI can filter, and each comes after the
    # API handler, so a filter on it (which sees the record last) cannot keep it from the run log.
    terminal = [h for h in reached if isinstance(h, type(consoles[0]))]
    assert terminal and all(h in consoles for h in terminal)
    assert max(reached.index(h) for h in api) < min(reached.index(h) for h in terminal)
    assert all(not isinstance(h, APILogHandler) for h in consoles)


async def test_engines_log_failures_with_their_traceback_on_run_loggers() -> None:
    @task(retries=0)
    async def failing_task() -> None:
        raise Boom("task failed")

    @flow
    async def failing_flow() -> None:
        await failing_task()

    recorder = Recorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        with pytest.raises(Boom):
            await failing_flow()
    finally:
        root.removeHandler(recorder)
    with_traceback = [r for r in recorder.records if r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert {r.name for r in with_traceback} >= {"prefect.flow_runs", "prefect.task_runs"}
    assert all(is_run_log(r) for r in with_traceback)
    # Each run ends with a state line that quotes the failure as "<Type>: <message>".
    state_lines = [r.getMessage() for r in recorder.records if "Finished in state Failed" in r.getMessage()]
    assert len(state_lines) == 2 and all("Boom: task failed" in line for line in state_lines)
