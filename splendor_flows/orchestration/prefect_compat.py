"""Every use of Prefect beyond its public API, in one place.

Each section names what it relies on and has a test in tests/compat/ that fails when a Prefect
upgrade changes it, so an upgrade breaks a named test instead of a production run. Sections are
independent (own names; the imports they need are listed at the top); add new ones at the end.
"""

import logging

import pydantic
from prefect import get_client
from prefect.client.schemas.objects import Variable

# ==================================================================================================
# Section: variables filtered by tag, paged (connectors-as-code credential fingerprints)
# Relies on: the server route POST /variables/filter and its body {"variables": {"tags": {"all_"}},
# "limit", "offset"}, sent through PrefectClient.request. Test: tests/compat/test_variables.py
# ==================================================================================================

_VARIABLE_LIST = pydantic.TypeAdapter(list[Variable])


async def read_variables_tagged(tag: str, *, page_size: int = 200) -> list[Variable]:
    """Every variable carrying ``tag``, read a page at a time.

    `PrefectClient.read_variables` takes only a limit (no tag filter, no offset), and the server caps
    any page, so one call cannot return them all; this posts the server's own filter body instead.
    """
    found: dict[str, Variable] = {}
    async with get_client() as client:
        offset = 0
        while True:
            response = await client.request(
                "POST",
                "/variables/filter",
                json={"variables": {"tags": {"all_": [tag]}}, "limit": page_size, "offset": offset},
            )
            page = _VARIABLE_LIST.validate_python(response.json())
            if page and all(v.name in found for v in page):
                # A server that ignores `offset` would otherwise make this loop forever.
                raise RuntimeError("POST /variables/filter returned the same page twice: offset ignored?")
            found.update((v.name, v) for v in page)
            if len(page) < page_size:
                return list(found.values())
            offset += page_size


# ==================================================================================================
# Section: the terminal handler of run logs (CLI)
# Relies on: Prefect's default logging config (prefect/logging/logging.yml): the run loggers
# `prefect.flow_runs` / `prefect.task_runs` carry the API handler and propagate to the root logger,
# whose PrefectConsoleHandler prints to the terminal; the flow and task engines log a failure with
# its traceback (exc_info) on those loggers. Test: tests/compat/test_console_logging.py
# ==================================================================================================

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def is_run_log(record: logging.LogRecord) -> bool:
    """True for a record of a flow or task run's logger (the ones the API handler sends to the server)."""
    return any(record.name == name or record.name.startswith(f"{name}.") for name in RUN_LOGGERS)


def console_handlers() -> list[logging.Handler]:
    """The handlers that print run logs on the terminal.

    A filter on these changes what the terminal shows without touching the run log on the server:
    the API handler sits on the run loggers themselves, not on the root.
    """
    # Importing prefect (done by this module) has applied its logging config already.
    from prefect.logging.handlers import PrefectConsoleHandler

    return [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]


def run_log_api_handlers() -> dict[str, list[logging.Handler]]:
    """The handlers that send each run logger's records to the Prefect API (for the compat test)."""
    from prefect.logging.handlers import APILogHandler

    return {
        name: [h for h in logging.getLogger(name).handlers if isinstance(h, APILogHandler)]
        for name in RUN_LOGGERS
    }
