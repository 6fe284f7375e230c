"""One scheduler per source: the change that makes a deployment hold the schedule a spec asks for."""

from splendor_flows.engine.schedules import (
    CronSchedule,
    schedule_change,
    schedule_parameters,
    schedule_slug,
)

SLUG = schedule_slug("stripe-prod")
PARAMS = schedule_parameters("stripe-prod", None)


def cron(expr: str = "0 3 * * *", tz: str | None = "Europe/Paris", **params: str) -> CronSchedule:
    return CronSchedule(cron=expr, timezone=tz, parameters={**PARAMS, **params})


def test_slug_and_parameters_name_the_source() -> None:
    assert SLUG == "source-stripe-prod"
    assert PARAMS == {"source_key": "stripe-prod", "trigger": "scheduled"}
    assert schedule_parameters("k", "prod-creds")["credentials_block"] == "prod-creds"


def test_a_missing_schedule_is_created_and_a_matching_one_left_alone() -> None:
    created = schedule_change(SLUG, cron(), None)
    assert created is not None and created.action == "create" and created.wanted == cron()
    assert schedule_change(SLUG, cron(), ("id-1", cron())) is None
    assert schedule_change(SLUG, None, None) is None


def test_cron_timezone_or_parameters_differing_is_an_update_of_the_same_schedule() -> None:
    for wanted in (cron("15 4 * * 1-5"), cron(tz="America/New_York"), cron(credentials_block="b")):
        change = schedule_change(SLUG, wanted, ("id-1", cron()))
        assert change is not None and change.action == "update" and change.schedule_id == "id-1"
        assert change.wanted == wanted and change.current == cron()


def test_no_time_zone_on_the_deployment_means_utc() -> None:
    assert schedule_change(SLUG, cron(tz="UTC"), ("id-1", cron(tz=None))) is None
    assert schedule_change(SLUG, cron(tz="Europe/Paris"), ("id-1", cron(tz=None))) is not None


def test_a_schedule_the_spec_no_longer_asks_for_is_removed() -> None:
    change = schedule_change(SLUG, None, ("id-1", cron()))
    assert change is not None and change.action == "remove" and change.schedule_id == "id-1"
    assert "Europe/Paris" in change.describe() and change.describe().endswith("→ none")


def test_a_non_cron_schedule_under_the_slug_is_replaced_by_the_cron() -> None:
    odd = CronSchedule(cron=None, timezone=None, parameters=PARAMS)
    change = schedule_change(SLUG, cron(), ("id-1", odd))
    assert change is not None and change.action == "update"
