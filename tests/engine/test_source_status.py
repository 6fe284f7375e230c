"""The rows of `status`, built from plain values: who schedules a source, its freshness, failures in a
row, ingest state, waits on a person, a connectors file's comparison, and problems first."""

from datetime import UTC, datetime, timedelta
from typing import Any

from splendor_api import models
from splendor_flows.engine.source_status import (
    RUNS_READ,
    PersonWait,
    PrefectSchedule,
    PrefectView,
    Scheduler,
    SplendorSource,
    SplendorView,
    build_rows,
)
from splendor_flows.specs.source import SourceSpec

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
THRESHOLD = 93600.0
_ids = iter(range(1, 10_000))


def source(
    key: str, *, cron: str | None = None, runs: list[models.ConnectorRun] | None = None
) -> SplendorSource:
    source_id = next(_ids)
    base = models.Source(
        source_id=source_id,
        source_key=key,
        source_type="airbyte",
        tenant_id="acme",
        name=key,
        dataset_id="d",
        created_at=NOW - timedelta(days=30),
    )
    airbyte = models.AirbyteState(
        source_id=source_id,
        provider_key="stripe",
        credential_status="ready",
        connection_status="active",
        schedule_type="cron" if cron else "manual",
        cron_expression=cron,
    )
    return SplendorSource(base, airbyte, runs or [])


def run(run_id: int, status: str, ago: timedelta, records: int = 5) -> models.ConnectorRun:
    return models.ConnectorRun(
        run_id=run_id, source_id=0, status=status, records_synced=records, completed_at=NOW - ago
    )


def ingest(run_id: int, status: str) -> models.IngestRun:
    return models.IngestRun(
        ingest_run_id=f"i-{run_id}-{status}",
        tenant_id="acme",
        dataset_id="d",
        source_id=0,
        status=status,
        connector_run_id=run_id,
    )


def rows(
    *sources: SplendorSource,
    prefect: PrefectView | None = None,
    ingest_runs: list[models.IngestRun] = (),  # type: ignore[assignment]
    specs: list[SourceSpec] | None = None,
) -> dict[str, Any]:
    by_run: dict[int, list[models.IngestRun]] = {}
    for item in ingest_runs:
        assert item.connector_run_id is not None
        by_run.setdefault(item.connector_run_id, []).append(item)
    built = build_rows(SplendorView(list(sources), by_run), prefect or PrefectView(), THRESHOLD, NOW, specs)
    return {row.source_key: row for row in built}


def test_a_splendor_cron_source_is_judged_against_twice_its_interval() -> None:
    fresh = source("fresh", cron="0 * * * *", runs=[run(2, "succeeded", timedelta(minutes=90))])
    stale = source("stale", cron="0 * * * *", runs=[run(3, "succeeded", timedelta(hours=2, seconds=1))])
    found = rows(fresh, stale)
    assert found["fresh"].scheduler is Scheduler.SPLENDOR
    assert found["fresh"].next_run == datetime(2026, 12, 5, 13, 0, tzinfo=UTC)
    assert found["fresh"].window is not None and found["fresh"].window.seconds == 7200
    assert not found["fresh"].stale and not found["fresh"].problems
    assert found["stale"].stale
    assert found["stale"].problems == ["stale: no successful sync within 7200 s (2 x 1h schedule)"]


def test_a_prefect_group_member_uses_the_group_cron_and_time_zone() -> None:
    item = source("grouped", runs=[run(4, "succeeded", timedelta(hours=30))])
    prefect = PrefectView(schedules={"grouped": PrefectSchedule("0 9 * * *", "Europe/Paris", True)})
    row = rows(item, prefect=prefect)["grouped"]
    assert row.scheduler is Scheduler.PREFECT
    # 09:00 in Paris in December is 08:00 UTC, the next day.
    assert row.next_run == datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert row.window is not None and row.window.seconds == 2 * 86400
    assert not row.stale


def test_a_source_without_a_schedule_gets_the_automation_threshold() -> None:
    fine = source("manual", runs=[run(5, "succeeded", timedelta(hours=25))])
    late = source("late", runs=[run(6, "succeeded", timedelta(hours=26, seconds=1))])
    found = rows(fine, late)
    assert found["manual"].window is not None and found["manual"].window.seconds == THRESHOLD
    assert not found["manual"].stale and found["late"].stale


def test_a_paused_group_is_a_problem_and_falls_back_to_the_threshold() -> None:
    item = source("paused", runs=[run(7, "succeeded", timedelta(hours=3))])
    prefect = PrefectView(schedules={"paused": PrefectSchedule("0 * * * *", "UTC", False)})
    row = rows(item, prefect=prefect)["paused"]
    assert row.next_run is None and row.window is not None and row.window.seconds == THRESHOLD
    assert row.problems == ["its schedule group is paused"]


def test_failures_in_a_row_stop_at_the_last_success_and_skip_a_run_in_flight() -> None:
    runs = [
        run(13, "running", timedelta(0)),
        run(12, "failed", timedelta(hours=1)),
        run(11, "cancelled", timedelta(hours=2)),
        run(10, "succeeded", timedelta(hours=3)),
        run(9, "failed", timedelta(hours=4)),
    ]
    row = rows(source("flaky", runs=runs))["flaky"]
    assert (row.failures_in_row, row.failures_capped) == (2, False)
    assert row.last_run is not None and row.last_run.status == "running"
    assert "2 failed run(s) in a row" in row.problems


def test_failures_past_the_runs_read_are_shown_as_capped() -> None:
    runs = [run(100 - i, "failed", timedelta(hours=i)) for i in range(RUNS_READ)]
    row = rows(source("broken", runs=runs))["broken"]
    assert (row.failures_in_row, row.failures_capped) == (RUNS_READ, True)
    assert f"{RUNS_READ}+ failed run(s) in a row" in row.problems
    assert row.stale  # no success among the runs read: its age is unknown


def test_the_ingest_state_is_that_of_the_last_run() -> None:
    ready = source("ready", runs=[run(20, "succeeded", timedelta(minutes=5))])
    failed = source("failed", runs=[run(21, "succeeded", timedelta(minutes=5))])
    going = source("going", runs=[run(22, "succeeded", timedelta(minutes=5))])
    found = rows(
        ready,
        failed,
        going,
        ingest_runs=[
            ingest(20, "ready"),
            ingest(21, "ready"),
            ingest(21, "failed"),
            ingest(22, "processing"),
        ],
    )
    assert (found["ready"].ingest, found["failed"].ingest, found["going"].ingest) == (
        "ready",
        "failed",
        "in progress",
    )
    assert found["failed"].problems == ["ingestion of the last run failed"]


def test_a_wait_counts_for_the_source_it_names() -> None:
    item = source("oauthy")
    other_tenant = PersonWait("classification review", "run-2", NOW, "link-2", source_key="someone-else")
    mine = PersonWait("oauth consent", "run-1", NOW, "http://ui/runs/flow-run/run-1", source_key="oauthy")
    prefect = PrefectView(waits={item.source.source_id: [mine, other_tenant]})
    row = rows(item, prefect=prefect)["oauthy"]
    assert row.waits == [mine]
    assert "waiting on a person: oauth consent" in row.problems


def test_a_connectors_file_marks_what_each_side_lacks() -> None:
    common = {
        "dataset_id": "d",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/r",
    }
    in_both = SourceSpec(provider_key="stripe", source_key="both", streams=["charges"], **common)
    file_only = SourceSpec(
        provider_key="hubspot",
        source_key="file-only",
        streams=["contacts"],
        schedule={"cron": "0 3 * * *"},
        **common,
    )
    found = rows(
        source("both", runs=[run(30, "succeeded", timedelta(hours=1))]),
        source("splendor-only", runs=[run(31, "succeeded", timedelta(hours=1))]),
        specs=[in_both, file_only],
    )
    assert found["both"].in_file is True and not found["both"].problems
    assert found["splendor-only"].in_file is False
    assert found["splendor-only"].problems == ["in Splendor but not in the connectors file"]
    lacking = found["file-only"]
    assert (lacking.in_splendor, lacking.provider, lacking.scheduler) == (False, "hubspot", Scheduler.PREFECT)
    assert lacking.problems == ["in the connectors file but not in Splendor"]


def test_problems_come_first() -> None:
    built = build_rows(
        SplendorView(
            [
                source("a-fine", runs=[run(40, "succeeded", timedelta(hours=1))]),
                source("b-failing", runs=[run(41, "failed", timedelta(hours=1))]),
                source("c-fine", runs=[run(42, "succeeded", timedelta(hours=1))]),
                source("d-never-synced", runs=[]),
                SplendorSource(source("e-unread").source, None, [], error="[status] HTTP 500"),
            ],
            {},
        ),
        PrefectView(),
        THRESHOLD,
        NOW,
    )
    assert [r.source_key for r in built] == ["b-failing", "d-never-synced", "e-unread", "a-fine", "c-fine"]
    assert built[2].problems == ["could not be read: [status] HTTP 500"]
