"""A fleet's run-id records wait for the other sources' starts, never longer than the bound, and a wait
that fails is reported as a failed write (the start's intent is already on record)."""

import asyncio

import pytest

from splendor_flows.engine.report import Level
from splendor_flows.fleet import source as fleet_source
from splendor_flows.fleet.source import AfterStarts, StartsOut


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[Level, str]] = []

    def step(self, name: str, run_id: int | None = None) -> None: ...

    def log(self, level: Level, message: str) -> None:
        self.lines.append((level, message))

    def event(self, name: object, payload: object) -> None: ...

    async def progress(self, percent: float) -> None: ...


async def test_a_run_id_write_waits_until_every_source_sent_its_start() -> None:
    starts = StartsOut(["a", "b"])
    written: list[str] = []

    async def write() -> None:
        written.append("a's run id")

    deferred = AfterStarts(starts)
    deferred.add("a's run-id record", write())
    starts.sent("a")
    await asyncio.sleep(0.05)
    assert written == [], "written while source b had still to send its start"
    starts.sent("b")
    await deferred.settle(Lines())
    assert written == ["a's run id"]


async def test_a_run_id_write_waits_no_longer_than_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_source, "RUN_ID_WRITE_WAIT_SECONDS", 0.05)
    written: list[str] = []

    async def write() -> None:
        written.append("run id")

    deferred = AfterStarts(StartsOut(["a", "never-starts"]))
    deferred.add("a's run-id record", write())
    await asyncio.wait_for(deferred.settle(Lines()), timeout=5)
    assert written == ["run id"]


async def test_a_fleet_without_sources_to_wait_for_writes_at_once() -> None:
    written: list[str] = []

    async def write() -> None:
        written.append("run id")

    deferred = AfterStarts(StartsOut())
    deferred.add("run-id record", write())
    await asyncio.wait_for(deferred.settle(Lines()), timeout=5)
    assert written == ["run id"]
