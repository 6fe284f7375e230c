"""The live view's pieces: the board, what it draws, how events move it, what a summary keeps, and
the plain step lines of a single-source command."""

import io
import logging
import uuid
from pathlib import Path

import prefect
import pytest
from prefect.events import Event
from rich.console import Console

from splendor_flows.cli import console as cli_console
from splendor_flows.cli.live_view import (
    Board,
    apply_tracker,
    fitting,
    fleet_tracker,
    render,
    repair_tracker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(name: str, key: str | None = None, resource_id: str | None = None, **payload: object) -> Event:
    resource = {"prefect.resource.id": resource_id or f"splendor.source.acme.{key}"}
    if key is not None:
        resource |= {"splendor.tenant": "acme", "splendor.source_key": key}
    return Event(event=name, resource=resource, payload=payload)


def drawn(board: Board, width: int = 80, height: int = 10) -> list[str]:
    out = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    out.print(render(board, width, height))
    text = out.file.getvalue()
    assert isinstance(text, str)
    return text.splitlines()


def test_the_board_counts_and_finishes_each_item_once() -> None:
    clock = Clock()
    finished: list[tuple[str, bool, str]] = []
    board = Board("fleet", total=5, clock=clock, on_finish=lambda *args: finished.append(args))
    board.step("a", "sync run 1 started")
    clock.now += 3
    board.step("b", "sync run 2 started")
    board.step("a", "run 1 succeeded")
    board.finish("a", True, "synced")
    board.finish("a", False, "late duplicate")  # a late event never finishes an item twice
    board.step("a", "sync run 1 started")  # nor brings it back
    board.finish("c", False, "failed at lookup")

    snap = board.snapshot()
    assert (snap.done, snap.failed, snap.waiting) == (1, 1, 2)
    assert [(i.key, i.step) for i in snap.running] == [("b", "sync run 2 started")]
    assert snap.elapsed == 3
    assert finished == [("a", True, "synced"), ("c", False, "failed at lookup")]


def test_the_view_never_grows_past_the_screen() -> None:
    board = Board("fleet", total=500)
    for i in range(200):
        board.step(f"source-{i:03d}", f"sync run {i} started (attempt 1)")
    board.finish("source-000", True)

    lines = drawn(board, height=10)

    assert len(lines) == 10
    assert lines[0].startswith("fleet  1 done · 0 failed · 199 in flight · 300 waiting · 0:")
    assert lines[1].startswith("  source-001  sync run 1 started (attempt 1)")
    assert lines[-1] == "  … and 191 more in flight"


def test_a_long_step_is_cut_to_the_width() -> None:
    board = Board("apply")
    board.step("s", "x" * 300)
    assert all(len(line) <= 60 for line in drawn(board, width=60))


def test_fleet_events_move_a_source_from_sync_to_done_or_failed() -> None:
    board = Board("fleet", total=3)
    track = fleet_tracker(wait_for_ingest=False)
    track(board, event("splendor.sync.started", "a", run_id=7, attempt=1))
    track(board, event("splendor.sync.started", "b", run_id=8, attempt=1))
    assert [i.step for i in board.snapshot().running] == [
        "sync run 7 started (attempt 1)",
        "sync run 8 started (attempt 1)",
    ]
    # A failed run is not the end: the fleet may start another attempt.
    track(board, event("splendor.sync.failed", "b", run_id=8, status="failed"))
    assert board.snapshot().failed == 0
    track(board, event("splendor.sync.succeeded", "a", run_id=7, records_synced=60))
    track(board, event("splendor.ingest.enqueued", "a", run_id=7))
    track(board, event("splendor.ingest.failed", "b", run_id=9, error_message="bad rows"))

    snap = board.snapshot()
    assert (snap.done, snap.failed, snap.waiting, snap.running) == (1, 1, 1, [])


def test_a_fleet_that_waits_for_ingestion_is_done_at_ready() -> None:
    board = Board("fleet", total=1)
    track = fleet_tracker(wait_for_ingest=True)
    track(board, event("splendor.ingest.enqueued", "a", run_id=7))
    assert board.snapshot().done == 0
    track(board, event("splendor.ingest.ready", "a", run_id=7, documents=3))
    assert board.snapshot().done == 1


def test_apply_ends_a_source_with_its_onboarding_runs_final_state() -> None:
    board = Board("apply")
    track = apply_tracker()
    run_a, run_b = str(uuid.uuid4()), str(uuid.uuid4())
    track(board, event("splendor.source.created", "a", flow_run_id=run_a))
    track(board, event("splendor.credentials.ready", "a", flow_run_id=run_a))
    assert [(i.key, i.step) for i in board.snapshot().running] == [("a", "credentials ready")]
    track(board, event("prefect.flow-run.Running", resource_id=f"prefect.flow-run.{run_a}"))
    assert board.snapshot().done == 0
    track(board, event("prefect.flow-run.Completed", resource_id=f"prefect.flow-run.{run_a}"))
    # The stream may deliver a run's final state before the event that names its source.
    track(board, event("prefect.flow-run.Failed", resource_id=f"prefect.flow-run.{run_b}"))
    track(board, event("splendor.source.reused", "b", flow_run_id=run_b))

    snap = board.snapshot()
    assert (snap.done, snap.failed, snap.running) == (1, 1, [])


def test_repair_follows_each_run() -> None:
    board = Board("repair s")
    track = repair_tracker()
    track(board, event("splendor.ingest.enqueued", "s", run_id=3, repair_attempt=1))
    track(board, event("splendor.ingest.enqueued", "s", run_id=4, repair_attempt=2))
    track(board, event("splendor.ingest.ready", "s", run_id=3))
    snap = board.snapshot()
    assert snap.done == 1 and [(i.key, i.step) for i in snap.running] == [("run 4", "repair 2 queued")]


def terminal(height: int) -> Console:
    return Console(file=io.StringIO(), width=100, height=height, force_terminal=True)


def test_a_summary_keeps_what_needs_attention_when_it_does_not_fit() -> None:
    rows = [f"ok-{i}" for i in range(50)] + ["failed-1", "failed-2"]

    def attention(row: str) -> bool:
        return row.startswith("failed")

    kept, hidden = fitting(rows, attention, terminal(height=15), show_all=False)
    assert kept == ["ok-0", "ok-1", "ok-2", "failed-1", "failed-2"] and hidden == 47
    assert fitting(rows, attention, terminal(height=15), show_all=True) == (rows, 0)
    assert fitting(rows, attention, terminal(height=100), show_all=False) == (rows, 0)
    # Not a terminal (a pipe, CI): every row, for grep.
    pipe = Console(file=io.StringIO(), width=100, height=15)
    assert fitting(rows, attention, pipe, show_all=False) == (rows, 0)


def record(name: str, message: str, pathname: str, **extra: str) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, pathname, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_step_lines_are_plain_and_leave_the_engines_lines_out(capsys: pytest.CaptureFixture[str]) -> None:
    lines = cli_console._StepLines()
    engine = str(Path(prefect.__file__).parent / "task_engine.py")
    ours = str(Path(cli_console.__file__))

    lines.handle(record("prefect.task_runs", "Started sync run 3 (attempt 1)", ours, task_name="sync"))
    lines.handle(record("prefect.task_runs", "Finished in state Completed()", engine, task_name="sync"))
    lines.handle(record("prefect.flow_runs", "Beginning flow run 'x' for flow 'sync-source'", engine))
    lines.handle(record("prefect.flow_runs", "Pipeline for acme/s with sync_id=1", ours))
    lines.handle(record("prefect.engine", "View at http://127.0.0.1:4200/runs/flow-run/1", engine))

    assert capsys.readouterr().out.splitlines() == [
        "sync: Started sync run 3 (attempt 1)",
        "Pipeline for acme/s with sync_id=1",
        "View at http://127.0.0.1:4200/runs/flow-run/1",
    ]


def test_without_verbose_run_logs_stay_off_the_terminal() -> None:
    quiet = cli_console._RunLogsOffConsole()
    assert not quiet.filter(record("prefect.task_runs", "Started sync run 3", __file__))
    assert not quiet.filter(record("prefect.flow_runs.child", "x", __file__))
    assert not quiet.filter(record("prefect.engine", "View at http://x", __file__))
    warning = record("prefect.engine", "Crash detected", __file__)
    warning.levelno = logging.WARNING
    assert quiet.filter(warning)
    assert quiet.filter(record("prefect", "Starting temporary server on http://127.0.0.1:8000", __file__))


async def test_without_an_event_stream_the_view_says_so_and_the_command_goes_on() -> None:
    import asyncio
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from splendor_flows.cli.live_view import Watch, following

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    board = Board("fleet", total=1)

    async def command() -> str:
        for _ in range(200):
            if board.snapshot().notice:
                break
            await asyncio.sleep(0.1)
        return "summary"

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        assert await following(command(), Watch(board, fleet_tracker(False))) == "summary"
    notice = board.snapshot().notice
    assert notice is not None
    assert notice.startswith("no live progress: the Prefect event stream is unavailable")
