"""What every CLI command prints through: the two consoles, error lines, tables, running a flow.

Every piece of text that did not come from this package's own markup goes through `rich.markup.escape`:
step prefixes such as "[sync]", JSON lists and API details look like rich markup and would otherwise be
swallowed. Long lines are never hard-wrapped (`soft_wrap`), so an error stays one greppable line when
the output is piped or logged.
"""

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from splendor_flows.cli.live_view import Watch

T = TypeVar("T")

console = Console()
errors = Console(stderr=True)

CredentialsOption = Annotated[
    str | None,
    typer.Option(
        "--credentials-block", "-b", help="Splendor Credentials block; default: SPLENDOR_* variables."
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Print Prefect's run log lines as they come (they always reach the run logs on the server).",
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
    """Failures a command reports as one line: they already say the step, the source and what to do
    (or, for a Prefect API that stayed away, that it was Prefect and what to do).

    Imported on demand so `--help` does not load Prefect.
    """
    from splendor_api import SplendorError
    from splendor_flows.engine.errors import StepError
    from splendor_flows.orchestration.prefect_outage import PrefectUnavailable
    from splendor_flows.specs.connectors_file import ConnectorsFileError

    return (StepError, SplendorError, ConnectorsFileError, PrefectUnavailable)


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
        from splendor_flows.orchestration.prefect_outage import prefect_outage

        super().__init__()
        self.expected = expected
        self.names = _type_names(expected)
        self.is_run_log = is_run_log
        self.prefect_outage = prefect_outage

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_run_log(record):
            return True
        if record.exc_info is not None:
            failure = record.exc_info[1]
            return not (
                isinstance(failure, self.expected)
                or (failure is not None and self.prefect_outage(failure) is not None)
            )
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


# Where Prefect's engines say "View at <run URL>" (one line per run, before the run logger exists);
# it goes to the terminal only, never to the run log.
ENGINE_LOGGER = "prefect.engine"


class _RunLogsOffConsole(logging.Filter):
    """Keeps the flow and task runs' log lines off the terminal (without --verbose), and the engines'
    "View at <run URL>" line of each run.

    The API handler sits on the run loggers themselves and runs before the record propagates to the
    root's console handler, so every line still reaches the run log on the Prefect server.
    """

    def __init__(self) -> None:
        from splendor_flows.orchestration.prefect_compat import is_run_log

        super().__init__()
        self.is_run_log = is_run_log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ENGINE_LOGGER:
            return record.levelno >= logging.WARNING
        return not self.is_run_log(record)


class _StepLines(logging.Handler):
    """The steps of a single-source command, in plain words: "sync: Started sync run 3 (attempt 1)".

    Only what the project's flows and tasks log, at INFO and above, and the link to the run; the
    engines' own lines ("Beginning flow run ...", "Finished in state Completed()") stay in the run
    log. Printed without time, level or run name, one line each, so a pipe gets the same text as a
    terminal.
    """

    def __init__(self) -> None:
        import prefect

        super().__init__(level=logging.INFO)
        self.prefect_dir = str(Path(prefect.__file__).parent)

    def emit(self, record: logging.LogRecord) -> None:
        if record.pathname.startswith(self.prefect_dir) and record.name != ENGINE_LOGGER:
            return
        step = getattr(record, "task_name", None)
        text = record.getMessage()
        line = Text(f"{step}: {text}" if step else text)
        if record.levelno >= logging.WARNING:
            line.stylize("yellow" if record.levelno == logging.WARNING else "red")
        console.print(line, soft_wrap=True, highlight=False)


@contextlib.contextmanager
def _terminal_output(verbose: bool, steps: bool) -> Iterator[None]:
    from splendor_flows.orchestration.prefect_compat import RUN_LOGGERS, console_handlers

    if verbose:
        yield
        return
    quiet = _RunLogsOffConsole()
    handlers = console_handlers()
    lines = _StepLines() if steps else None
    for handler in handlers:
        handler.addFilter(quiet)
    if lines is not None:
        for name in (*RUN_LOGGERS, ENGINE_LOGGER):
            logging.getLogger(name).addHandler(lines)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
        if lines is not None:
            for name in (*RUN_LOGGERS, ENGINE_LOGGER):
                logging.getLogger(name).removeHandler(lines)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr descriptors at `path` (what a child started now inherits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def start_temporary_server_off_terminal() -> Path | None:
    """Start Prefect's temporary server now, its output going to a log file; None when there is none.

    Without PREFECT_API_URL, Prefect starts a server in a subprocess on first use. The subprocess
    inherits this process's stdout and stderr and writes to them whenever it likes (a usage-data
    notice, a failed telemetry call), which scrambles a live view. Started here first, with its
    output in $PREFECT_HOME/splendor/temporary-server.log, it is the one every Prefect client of
    this process then finds running (one instance per process, `SubprocessASGIServer()`).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    log = Path(PREFECT_HOME.value()) / "splendor" / "temporary-server.log"
    with _output_to(log):
        SubprocessASGIServer().start()
    return log


def run(
    coro: Coroutine[Any, Any, T],
    resume_hint: str | None = None,
    reraise: tuple[type[Exception], ...] = (),
    *,
    verbose: bool = False,
    steps: bool = False,
    watch: "Watch | None" = None,
) -> T:
    """Run a flow (or any coroutine) in this process; an expected failure becomes one error line.

    `reraise` names further expected failures the caller reports itself (they also stay off the
    terminal as tracebacks). Anything else is a bug and keeps its traceback.

    Prefect's run log lines reach the terminal only with `verbose`. Without it a single-source command
    (`steps`) prints its steps in plain words, and a command over many sources shows `watch`'s live
    view (plain lines when not on a terminal).
    """
    expected = expected_failures()
    from splendor_flows.cli.live_view import following, is_live, showing
    from splendor_flows.orchestration.prefect_compat import console_handlers
    from splendor_flows.orchestration.prefect_outage import riding_out_prefect_outages

    # For the process's life: the services drain their queues at exit, after this function returned.
    for handler in console_handlers():
        handler.addFilter(_DRAIN_NOTICES)
    view = showing(watch, console) if watch is not None and not verbose else contextlib.nullcontext()
    if watch is not None and not verbose and is_live(console):
        start_temporary_server_off_terminal()
    try:
        # The view is entered last: its filter sees only the records the others let through.
        # A busy or restarting Prefect API is waited out; longer, it leaves as PrefectUnavailable.
        with (
            riding_out_prefect_outages(),
            _expected_failures_off_console(expected + reraise),
            _terminal_output(verbose, steps),
            view,
        ):
            return asyncio.run(following(coro, watch) if watch is not None and not verbose else coro)
    except reraise:
        raise
    except expected as exc:
        fail(f"{exc}\n{resume_hint}" if resume_hint else str(exc))
