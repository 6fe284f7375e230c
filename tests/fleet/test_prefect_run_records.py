"""Start records in Prefect Variables: written with as few Prefect API calls as is safe, since a fleet
writes them for every source."""

from datetime import UTC, datetime

from splendor_flows.engine.run_records import SourceRuns, StartRecord
from splendor_flows.orchestration.checkpoint import Scope
from splendor_flows.orchestration.run_records import PrefectRunRecords


def _scope(source_key: str) -> Scope:
    return Scope(api_base="http://splendor.test", tenant="acme", source_key=source_key, sync_id="s1")


def _start(attempt: int, run_id: int | None) -> StartRecord:
    return StartRecord(pipeline="p", attempt=attempt, requested_at=datetime.now(UTC), run_id=run_id)


async def test_a_record_read_as_missing_is_created_then_updated(source_key: str) -> None:
    records = PrefectRunRecords()
    scope = _scope(source_key)
    assert await records.read(scope) == SourceRuns()
    first = SourceRuns().with_start(_start(1, None))
    await records.write(scope, first)
    second = first.with_start(_start(1, 42))
    await records.write(scope, second)
    assert await PrefectRunRecords().read(scope) == second


async def test_a_record_created_by_another_writer_since_the_read_is_updated_not_lost(source_key: str) -> None:
    scope = _scope(source_key)
    mine, theirs = PrefectRunRecords(), PrefectRunRecords()
    assert await mine.read(scope) == SourceRuns()
    assert await theirs.read(scope) == SourceRuns()
    await theirs.write(scope, SourceRuns().with_start(_start(1, 7)))
    # `mine` still believes the variable is missing: its create gets 409 and it updates instead.
    merged = SourceRuns().with_start(_start(1, 7)).with_start(_start(2, 8))
    await mine.write(scope, merged)
    assert await PrefectRunRecords().read(scope) == merged
