"""A spec's schedule: cron and time zone checked before anything is changed, and which scheduler runs it."""

from typing import Any

import pytest
from pydantic import ValidationError

from splendor_flows.specs.source import SourceSpec, describe_validation_error

BASE: dict[str, Any] = {
    "provider_key": "stripe",
    "source_key": "stripe-prod",
    "dataset_id": "payments",
    "bucket": "acme-connectors",
    "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
}


def spec(**schedule: Any) -> SourceSpec:
    return SourceSpec(**BASE, schedule=schedule)


def error_of(**schedule: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        spec(**schedule)
    return describe_validation_error(caught.value)


def test_prefect_is_the_default_runner_and_splendor_stays_manual() -> None:
    s = spec(cron="0 3 * * *", timezone="Europe/Paris")
    assert s.prefect_schedule is not None and s.prefect_schedule.timezone == "Europe/Paris"
    assert (s.schedule_type, s.splendor_cron) == ("manual", None)


def test_runner_splendor_gives_splendor_the_cron_and_prefect_nothing() -> None:
    s = spec(cron="0 3 * * *", runner="splendor")
    assert (s.schedule_type, s.splendor_cron, s.prefect_schedule) == ("cron", "0 3 * * *", None)


def test_no_schedule_is_manual_everywhere() -> None:
    s = SourceSpec(**BASE)
    assert (s.schedule_type, s.splendor_cron, s.prefect_schedule) == ("manual", None, None)


def test_an_unknown_time_zone_names_the_field_and_the_allowed_form() -> None:
    message = error_of(cron="0 3 * * *", timezone="Mars/Olympus")
    assert message.startswith("schedule.timezone:")
    assert "'Mars/Olympus' is not an IANA time zone name" in message and "'Europe/Paris'" in message


def test_a_time_zone_with_splendors_scheduler_is_refused_not_dropped() -> None:
    message = error_of(cron="0 3 * * *", timezone="Europe/Paris", runner="splendor")
    assert message.startswith("schedule:") and "with runner 'splendor' the timezone must be 'UTC'" in message


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ({"cron": "0 3 * *"}, "schedule.cron"),
        ({"cron": "61 3 * * *"}, "schedule.cron"),
        (
            {"cron": "0 3 * * *", "runner": "airflow"},
            "schedule.runner: Input should be 'prefect' or 'splendor'",
        ),
    ],
)
def test_bad_cron_and_runner_name_their_field(schedule: dict[str, str], says: str) -> None:
    assert says in error_of(**schedule)
