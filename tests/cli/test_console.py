"""The CLI's console module: text shown literally, one error line, the run-log filter."""

import io
import logging

import pytest
import typer
from rich.console import Console

from splendor_api import NotTenantAdmin
from splendor_flows.cli import console
from splendor_flows.cli.fleet_commands import fleet_table, plan_table
from splendor_flows.connectors.plan_apply import Change, Plan
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.fleet.run import FleetSummary
from splendor_flows.fleet.source import SourceOutcome


def render(renderable: object) -> str:
    out = Console(file=io.StringIO(), width=300)
    out.print(renderable)
    text = out.file.getvalue()
    assert isinstance(text, str)
    return text


def test_fail_prints_step_prefixes_literally_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    message = "[sync] source 'stripe-a': " + "x" * 200
    with pytest.raises(typer.Exit) as exited:
        console.fail(message)
    assert exited.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


def test_fleet_table_keeps_step_prefixes() -> None:
    summary = FleetSummary(
        tenant="acme",
        sync_id="s-1",
        sources=2,
        succeeded=1,
        failed=1,
        resumed=0,
        refresh_calls=3,
        api_slots=5,
        outcomes=[
            SourceOutcome(
                source_key="gone", status="failed", error="[lookup] source 'gone': not in the tenant"
            ),
            SourceOutcome(source_key="ok", status="succeeded", warnings=["[sync] 0 records"]),
        ],
    )
    text = render(fleet_table(summary))
    assert "[lookup] source 'gone'" in text
    assert "[sync] 0 records" in text


def test_plan_shows_bracketed_values_literally() -> None:
    change = Change(
        source_key="stripe-a", source_id=3, updates={"name": {"from": "Stripe", "to": "[eu] Stripe"}}
    )
    text = render(plan_table(Plan(tenant="acme", file="connectors.yaml", changes=[change])))
    assert "name: Stripe → [eu] Stripe" in text


def record(name: str, level: int, message: str, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord(name, level, __file__, 1, message, None, exc_info)


def test_filter_drops_expected_failures_of_runs_only() -> None:
    quiet = console._ExpectedFailuresOffConsole(console.expected_failures())
    expected = PermanentStepError("discover", "s", "unknown provider_key")
    denied = NotTenantAdmin(status=403, method="GET", path="/v1/me", detail="not an admin")
    bug = KeyError("bug")

    # The engines' failure reports (with traceback) and their "Finished in state" lines.
    assert not quiet.filter(record("prefect.task_runs", logging.ERROR, "Task run failed", expected))
    assert not quiet.filter(record("prefect.flow_runs", logging.ERROR, "Encountered exception", denied))
    failed_state = 'Finished in state Failed("Task run encountered an exception PermanentStepError: [d]")'
    assert not quiet.filter(record("prefect.task_runs", logging.ERROR, failed_state))
    # A bug keeps its traceback; progress lines and other loggers are untouched.
    assert quiet.filter(record("prefect.flow_runs", logging.ERROR, "Encountered exception", bug))
    assert quiet.filter(record("prefect.flow_runs", logging.ERROR, 'Failed("... KeyError: bug")'))
    assert quiet.filter(
        record("prefect.task_runs", logging.INFO, "Retry 1/2 will start (PermanentStepError: x)")
    )
    assert quiet.filter(record("splendor_api", logging.ERROR, "x", expected))


async def _nothing() -> int:
    return 1


def test_the_services_drain_notice_stays_off_the_terminal_and_their_other_warnings_do_not() -> None:
    """Prefect's EventsWorker says "Still processing items" when the CLI exits with events queued
    (routine after an expected failure); it made a one-line failure two lines on a busy machine."""
    from splendor_flows.orchestration.prefect_compat import console_handlers

    assert console.run(_nothing()) == 1
    [handler, *_] = console_handlers()

    def shown(message: str) -> bool:
        record = logging.LogRecord("EventsWorker", logging.WARNING, __file__, 1, message, None, None)
        return all(f.filter(record) for f in handler.filters if isinstance(f, logging.Filter))

    assert not shown("Still processing items: 3 items remaining...")
    assert shown("Service 'EventsWorker' queue is full (5000 items), dropping item")
