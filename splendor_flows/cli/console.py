"""What every CLI command prints through: the two consoles, error lines, tables, running a flow.

Every piece of text that did not come from this package's own markup goes through `rich.markup.escape`:
step prefixes such as "[sync]", JSON lists and API details look like rich markup and would otherwise be
swallowed. Long lines are never hard-wrapped (`soft_wrap`), so an error stays one greppable line when
the output is piped or logged.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

CredentialsOption = Annotated[
    str | None,
    typer.Option(
        "--credentials-block", "-b", help="Splendor Credentials block; default: SPLENDOR_* variables."
    ),
]


def cell(value: object) -> str:
    """A table cell or message fragment shown literally, whatever brackets it holds."""
    return escape(str(value))


def error(message: str) -> None:
    errors.print(f"[bold red]error:[/] {cell(message)}", soft_wrap=True)


def warn(message: str) -> None:
    errors.print(f"[yellow]warning:[/] {cell(message)}", soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line (plus any hint lines the message carries) and exit non-zero."""
    error(message)
    raise typer.Exit(code)


def show(title: str, values: BaseModel | dict[str, Any], skip: tuple[str, ...] = ("steps",)) -> None:
    """A two-column table of a result's non-empty fields."""
    data = values.model_dump(mode="json") if isinstance(values, BaseModel) else values
    table = Table(title=cell(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in data.items():
        if name not in skip and value not in (None, [], {}):
            table.add_row(cell(name), cell(value))
    console.print(table)


def expected_failures() -> tuple[type[Exception], ...]:
    """Failures a command reports as one line: they already say the step, the source and what to do.

    Imported on demand so `--help` does not load Prefect.
    """
    from splendor_api import SplendorError
    from splendor_flows.engine.errors import StepError
    from splendor_flows.specs.connectors_file import ConnectorsFileError

    return (StepError, SplendorError, ConnectorsFileError)


def _type_names(types: tuple[type[BaseException], ...]) -> frozenset[str]:
    names: set[str] = set()
    pending = list(types)
    while pending:
        kind = pending.pop()
        if kind.__name__ not in names:
            names.add(kind.__name__)
            pending.extend(kind.__subclasses__())
    return frozenset(names)


class _ExpectedFailuresOffConsole(logging.Filter):
    """Keeps the engines' reports of an expected failure off the terminal.

    Prefect's flow and task engines log a failure with its traceback on the run loggers, and each
    failed run ends with a "Finished in state Failed(...)" line quoting it as "<Type>: <message>".
    Those records still reach the run log on the server (the API handler sits on the run loggers and
    runs first); only the terminal copies are dropped, because the CLI prints the failure once, as
    one line. Anything that is not one of the expected failures keeps its traceback.
    """

    def __init__(self, expected: tuple[type[BaseException], ...]) -> None:
        from splendor_flows.orchestration.prefect_compat import is_run_log

        super().__init__()
        self.expected = expected
        self.names = _type_names(expected)
        self.is_run_log = is_run_log

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_run_log(record):
            return True
        if record.exc_info is not None:
            return not isinstance(record.exc_info[1], self.expected)
        if record.levelno >= logging.ERROR:
            message = record.getMessage()
            return not any(f"{name}: " in message for name in self.names)
        return True


@contextlib.contextmanager
def _expected_failures_off_console(expected: tuple[type[BaseException], ...]) -> Iterator[None]:
    from splendor_flows.orchestration.prefect_compat import console_handlers

    handlers = console_handlers()
    quiet = _ExpectedFailuresOffConsole(expected)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


class _DrainNoticesOffConsole(logging.Filter):
    """Drops Prefect's "Still processing items: N items remaining..." from the terminal.

    Prefect's event and log services say so when the process exits with items still queued, which is
    routine when a run ends at once (an expected failure, a short run on a busy machine): the items are
    sent all the same. Their other warnings (a full queue dropping items) stay on the terminal.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items:")


_DRAIN_NOTICES = _DrainNoticesOffConsole()


def run(
    coro: Coroutine[Any, Any, T],
    resume_hint: str | None = None,
    reraise: tuple[type[Exception], ...] = (),
) -> T:
    """Run a flow (or any coroutine) in this process; an expected failure becomes one error line.

    `reraise` names further expected failures the caller reports itself (they also stay off the
    terminal as tracebacks). Anything else is a bug and keeps its traceback.
    """
    expected = expected_failures()
    from splendor_flows.orchestration.prefect_compat import console_handlers

    # For the process's life: the services drain their queues at exit, after this function returned.
    for handler in console_handlers():
        handler.addFilter(_DRAIN_NOTICES)
    try:
        with _expected_failures_off_console(expected + reraise):
            return asyncio.run(coro)
    except reraise:
        raise
    except expected as exc:
        fail(f"{exc}\n{resume_hint}" if resume_hint else str(exc))
