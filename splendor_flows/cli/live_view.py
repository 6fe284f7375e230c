"""What a command over many sources shows while it runs: a live view on a terminal, plain lines in a pipe.

Where each source is comes from the `splendor.*` events the pipelines publish (and, for `apply`, the
Prefect flow-run state events of the onboarding runs), read back from the Prefect API's event stream.
That is the one record every pipeline already writes, whether it runs a task per step (`apply`'s
onboarding runs) or steps inside one flow run (the fleet), so the view needs nothing from the flows.

On a terminal the view is one header line (done / failed / in flight / waiting, elapsed time) and one
line per source in flight, cut to the screen's height; it disappears when the command ends and its
summary is printed. Without a terminal nothing is redrawn: one plain line per source when its events
say it finished, then the summary. The view only shows progress: the summary, built from what the
command returns, is the result (a source that finished without an event, resumed from a checkpoint
for instance, is only in the summary).
"""

import asyncio
import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from prefect.events import Event

T = TypeVar("T")
R = TypeVar("R")

AllRowsOption = Annotated[
    bool,
    typer.Option(
        "--all", help="List every source in the summary (on a terminal it keeps to what fits the screen)."
    ),
]
# Lines of a summary that are not rows: title, header, borders, caption, totals, the prompt after it.
SUMMARY_FRAME_LINES = 10


@dataclass
class Item:
    key: str
    step: str
    since: float


@dataclass
class Snapshot:
    running: list[Item]
    done: int
    failed: int
    waiting: int | None
    elapsed: float
    notice: str | None


# (key, succeeded, note): called once per item, when it first finishes.
FinishListener = Callable[[str, bool, str], None]


@dataclass
class Board:
    """Where each item (a source, or a run for `repair`) is, as far as its events tell.

    Written from the command's event loop and read by the live view's refresh thread, so every access
    holds the lock. `total` is the number of items the command works on when known up front; the
    rest of it is "waiting".
    """

    title: str
    total: int | None = None
    clock: Callable[[], float] = time.monotonic
    on_finish: FinishListener | None = None
    started: float = field(init=False)
    _running: dict[str, Item] = field(default_factory=dict, init=False)
    _done: dict[str, str] = field(default_factory=dict, init=False)
    _failed: dict[str, str] = field(default_factory=dict, init=False)
    _notice: str | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def step(self, key: str, text: str) -> None:
        """The item is at `text` now. An item already finished stays finished (events can arrive late)."""
        with self._lock:
            if key in self._done or key in self._failed:
                return
            current = self._running.get(key)
            self._running[key] = Item(key, text, current.since if current else self.clock())

    def finish(self, key: str, succeeded: bool, note: str = "") -> None:
        with self._lock:
            if key in self._done or key in self._failed:
                return
            self._running.pop(key, None)
            (self._done if succeeded else self._failed)[key] = note
        if self.on_finish is not None:
            self.on_finish(key, succeeded, note)

    def notice(self, text: str) -> None:
        with self._lock:
            self._notice = text

    def snapshot(self) -> Snapshot:
        with self._lock:
            seen = len(self._running) + len(self._done) + len(self._failed)
            return Snapshot(
                running=sorted(self._running.values(), key=lambda i: (i.since, i.key)),
                done=len(self._done),
                failed=len(self._failed),
                waiting=None if self.total is None else max(0, self.total - seen),
                elapsed=self.clock() - self.started,
                notice=self._notice,
            )


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def headline(board: Board, snap: Snapshot) -> Text:
    text = Text.assemble(
        (board.title, "bold"),
        "  ",
        (f"{snap.done} done", "green"),
        " · ",
        (f"{snap.failed} failed", "red" if snap.failed else ""),
        " · ",
        (f"{len(snap.running)} in flight", "cyan"),
    )
    if snap.waiting is not None:
        text.append(f" · {snap.waiting} waiting")
    text.append(f" · {clock_text(snap.elapsed)}", style="dim")
    return text


def render(board: Board, width: int, height: int) -> RenderableType:
    """The header and as many in-flight lines as the screen holds (oldest first), never more than
    `height` lines of at most `width` columns, so the view never scrolls whatever the number of
    sources."""
    snap = board.snapshot()
    lines: list[RenderableType] = [headline(board, snap)]
    if snap.notice:
        lines.append(Text(snap.notice, style="yellow"))
    room = max(0, height - len(lines))
    shown = snap.running if len(snap.running) <= room else snap.running[: max(0, room - 1)]
    for item in shown:
        line = Text(f"  {item.key}", style="bold")
        line.append(f"  {item.step}")
        line.append(f"  {clock_text(snap.elapsed - (item.since - board.started))}", style="dim")
        line.truncate(max(1, width), overflow="ellipsis")
        lines.append(line)
    if len(shown) < len(snap.running):
        lines.append(Text(f"  … and {len(snap.running) - len(shown)} more in flight", style="dim"))
    return Group(*lines)


def plain_line(key: str, succeeded: bool, note: str) -> str:
    """One greppable line per finished item: `done <key>: <note>` / `failed <key>: <note>`."""
    return f"{'done' if succeeded else 'failed'} {key}" + (f": {note}" if note else "")


def fitting(
    rows: list[R], attention: Callable[[R], bool], console: Console, show_all: bool
) -> tuple[list[R], int]:
    """The summary rows to print (in their order) and how many were left out.

    Every row goes to a pipe (what CI and grep read) and to a terminal where they fit. On a smaller
    terminal the rows that need attention (failures, blocked sources) are kept first, then the others
    as room allows, so the summary of 200 sources does not push its failures off the screen.
    """
    room = max(0, console.size.height - SUMMARY_FRAME_LINES)
    if show_all or not is_live(console) or len(rows) <= room:
        return rows, 0
    keep = {id(row) for row in rows if attention(row)}
    for row in rows:
        if len(keep) >= room:
            break
        keep.add(id(row))
    kept = [row for row in rows if id(row) in keep]
    return kept, len(rows) - len(kept)


def hidden_rows_line(hidden: int, noun: str = "source") -> str:
    return f"… and {hidden} more {noun}(s) with nothing to report (every row: --all)"


# ------------------------------------------------------------------------------------------------
# From events to the board: one tracker per command.
# ------------------------------------------------------------------------------------------------

Tracker = Callable[[Board, "Event"], None]

SOURCE_KEY = "splendor.source_key"


def _payload(event: "Event", name: str) -> Any:
    return (event.payload or {}).get(name)


def fleet_tracker(wait_for_ingest: bool) -> Tracker:
    """The fleet: sync started → run finished → ingestion queued (the end unless it waits for ingest)
    → ready. A failed run is not the end: the fleet may start another attempt."""

    def track(board: Board, event: "Event") -> None:
        key = event.resource.get(SOURCE_KEY)
        if key is None:
            return
        run = _payload(event, "run_id")
        name = event.event
        if name == "splendor.sync.started":
            board.step(key, f"sync run {run} started (attempt {_payload(event, 'attempt')})")
        elif name == "splendor.sync.succeeded":
            board.step(key, f"run {run} succeeded ({_payload(event, 'records_synced')} records), ingest next")
        elif name == "splendor.sync.failed":
            board.step(key, f"run {run} {_payload(event, 'status')}")
        elif name == "splendor.ingest.enqueued":
            if wait_for_ingest:
                board.step(key, f"ingestion of run {run} queued")
            else:
                board.finish(key, True, f"run {run} synced, ingestion queued")
        elif name == "splendor.ingest.ready":
            board.finish(key, True, f"run {run} ingested ({_payload(event, 'documents')} documents)")
        elif name == "splendor.ingest.failed":
            board.finish(key, False, f"ingestion of run {run} failed: {_payload(event, 'error_message')}")

    return track


_ONBOARDING_STEPS = {
    "splendor.source.created": "source created",
    "splendor.source.reused": "source exists, adopted",
    "splendor.credentials.waiting": "waiting for OAuth consent",
    "splendor.credentials.ready": "credentials ready",
    "splendor.classification.applied": "fields classified",
    "splendor.connection.created": "connection created",
}
_FLOW_RUN = "prefect.flow-run."
FLOW_RUN_FINAL = {"Completed": True, "Failed": False, "Crashed": False, "Cancelled": False}


def apply_tracker() -> Tracker:
    """`apply`: each onboarding is a connect-source flow run. Its `splendor.*` events name the source
    and carry the flow run's id; the run's own final state event (which names only the run) ends it."""
    source_of_run: dict[str, str] = {}
    ended_early: dict[str, bool] = {}  # final state seen before any event named the run's source

    def track(board: Board, event: "Event") -> None:
        if event.event.startswith(_FLOW_RUN):
            state = event.event.removeprefix(_FLOW_RUN)
            run_id = event.resource.id.removeprefix(_FLOW_RUN)
            if state in FLOW_RUN_FINAL:
                key = source_of_run.get(run_id)
                if key is None:
                    ended_early[run_id] = FLOW_RUN_FINAL[state]
                else:
                    board.finish(key, FLOW_RUN_FINAL[state], "onboarded" if FLOW_RUN_FINAL[state] else state)
            return
        key = event.resource.get(SOURCE_KEY)
        step = _ONBOARDING_STEPS.get(event.event)
        if key is None or step is None:
            return
        run_id = str(_payload(event, "flow_run_id") or "")
        if run_id:
            source_of_run[run_id] = key
        board.step(key, step)
        if run_id in ended_early:
            succeeded = ended_early.pop(run_id)
            board.finish(key, succeeded, "onboarded" if succeeded else "onboarding failed")

    return track


def repair_tracker() -> Tracker:
    """`repair`: the items are the source's sync runs; a run is done when its ingestion is ready again."""

    def track(board: Board, event: "Event") -> None:
        run = _payload(event, "run_id")
        if run is None:
            return
        key = f"run {run}"
        if event.event == "splendor.ingest.enqueued":
            board.step(key, f"repair {_payload(event, 'repair_attempt')} queued")
        elif event.event == "splendor.ingest.ready":
            board.finish(key, True, "ingestion ready")
        elif event.event == "splendor.ingest.failed":
            board.finish(key, False, f"still failed: {_payload(event, 'error_message')}")

    return track


@dataclass(frozen=True)
class Watch:
    """What a long command follows: its board, how events move it, which events, for which sources."""

    board: Board
    tracker: Tracker
    event_prefixes: tuple[str, ...] = ("splendor.",)
    # The command's sources: other commands may publish events to the same Prefect server meanwhile.
    source_keys: Collection[str] | None = None

    def wants(self, event: "Event") -> bool:
        if event.event.startswith(_FLOW_RUN):
            return True  # names only the run; the tracker keeps the runs it has seen a source for
        return self.source_keys is None or event.resource.get(SOURCE_KEY) in self.source_keys


async def follow(watch: Watch) -> None:
    """Feed the board from the Prefect API's event stream until cancelled.

    Losing the stream never fails the command: the view says so and the summary still comes.
    """
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    now = datetime.datetime.now(datetime.UTC)
    # The stream first replays what happened since `since`: events the command's runs published while
    # the subscription was connecting. A little before now, for the two clocks (this one, the server's).
    window = EventOccurredFilter(
        since=now - datetime.timedelta(seconds=2), until=now + datetime.timedelta(days=7)
    )
    wanted = EventFilter(occurred=window, event=EventNameFilter(prefix=list(watch.event_prefixes)))
    try:
        async with get_events_subscriber(filter=wanted, reconnection_attempts=2) as events:
            async for event in events:
                if watch.wants(event):
                    watch.tracker(watch.board, event)
    except Exception as exc:  # the view is a convenience; the command goes on without it
        reason = type(exc).__name__
        watch.board.notice(f"no live progress: the Prefect event stream is unavailable ({reason})")


async def following(coro: Coroutine[Any, Any, T], watch: Watch) -> T:
    """Run `coro` while the board follows its events."""
    follower = asyncio.create_task(follow(watch))
    try:
        return await coro
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


def is_live(console: Console) -> bool:
    """A terminal that can redraw lines (not a pipe, a file, CI's log, or TERM=dumb)."""
    return console.is_terminal and not console.is_dumb_terminal


class _ThroughLive(logging.Filter):
    """While the live view is drawn, the records Prefect's console handler would print (its own
    notices; run logs only with --verbose, which has no live view) go above the view instead of
    through it."""

    def __init__(self, live: Live, handler: logging.Handler) -> None:
        super().__init__()
        self.live = live
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        self.live.console.print(Text(self.handler.format(record)), soft_wrap=True)
        return False


@contextlib.contextmanager
def showing(watch: Watch, console: Console) -> Iterator[None]:
    """The live view on a terminal; elsewhere, one plain line per finished item."""
    board = watch.board
    if not is_live(console):
        board.on_finish = lambda key, ok, note: console.print(
            Text(plain_line(key, ok, note)), soft_wrap=True, highlight=False
        )
        yield
        return
    from splendor_flows.orchestration.prefect_compat import console_handlers

    live = Live(
        # The screen less one line, for the cursor; read on every refresh (the terminal may be resized).
        get_renderable=lambda: render(board, console.size.width, max(3, console.size.height - 1)),
        console=console,
        refresh_per_second=4,
        transient=True,
        vertical_overflow="crop",
    )
    filters = [(handler, _ThroughLive(live, handler)) for handler in console_handlers()]
    with live:
        for handler, divert in filters:
            handler.addFilter(divert)
        try:
            yield
        finally:
            for handler, divert in filters:
                handler.removeFilter(divert)
