"""The connectors file: defaults merge, and every mistake is reported where the user made it."""

from pathlib import Path
from typing import Any

import pytest

from splendor_flows.specs.connectors_file import ConnectorsFileError, load_connectors, parse_connectors

REPO = Path(__file__).resolve().parents[2]


def _entry(key: str, **extra: Any) -> dict[str, Any]:
    return {"provider_key": "stripe", "source_key": key, "dataset_id": "payments", **extra}


DEFAULTS = {"bucket": "acme-connectors", "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor"}


def test_the_example_file_is_valid() -> None:
    file = load_connectors(REPO / "deployments" / "connectors.yaml")
    keys = [s.source_key for s in file.sources]
    assert "stripe-demo" in keys and len(keys) == len(set(keys))


def test_the_scheduled_example_is_a_prefect_schedule_in_paris_time() -> None:
    [spec] = load_connectors(REPO / "deployments" / "examples" / "stripe-demo-connectors.yaml").sources
    assert spec.prefect_schedule is not None and spec.schedule_type == "manual"
    assert (spec.prefect_schedule.cron, spec.prefect_schedule.timezone) == ("0 3 * * *", "Europe/Paris")


def test_defaults_apply_and_entries_override_them() -> None:
    file = parse_connectors(
        {
            "defaults": {**DEFAULTS, "retention_days": 30},
            "sources": [_entry("a"), _entry("b", retention_days=90, bucket="other-bucket")],
        }
    )
    a, b = file.sources
    assert a.bucket == "acme-connectors" and a.retention_days == 30
    assert b.bucket == "other-bucket" and b.retention_days == 90


def test_errors_name_the_entry_and_the_field() -> None:
    with pytest.raises(ConnectorsFileError) as caught:
        parse_connectors(
            {
                "defaults": DEFAULTS,
                "sources": [
                    _entry("ok-1"),
                    _entry("ok-2"),
                    _entry("ok-3"),
                    _entry("bad-role", iam_role_arn="arn:aws:iam::12:role/x"),
                    _entry("bad stream", streams=["charges", "charges"]),
                ],
            }
        )
    problems = caught.value.problems
    assert any(p.startswith("sources[3] (bad-role).iam_role_arn: ") for p in problems), problems
    assert any(p.startswith("sources[4] (bad stream).source_key: ") for p in problems), problems
    assert any(p.startswith("sources[4] (bad stream).streams: ") for p in problems), problems
    assert "sk_" not in str(caught.value)


def test_defaults_duplicates_and_unknown_keys_are_reported_together() -> None:
    with pytest.raises(ConnectorsFileError) as caught:
        parse_connectors(
            {
                "versoin": 1,
                "defaults": {**DEFAULTS, "colour": "blue", "source_key": "x"},
                "sources": [_entry("same"), _entry("same"), _entry("extra", colour="red")],
            }
        )
    text = str(caught.value)
    assert "versoin: unknown top-level key" in text
    assert "defaults.colour: not a source field" in text
    assert "defaults.source_key: must be set per source" in text
    assert "sources[1].source_key: 'same' is already used by sources[0]" in text
    assert "sources[2] (extra).colour: Extra inputs are not permitted" in text


def test_yaml_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - provider_key: stripe\n    source_key: [unclosed\n")
    with pytest.raises(ConnectorsFileError, match=r"line \d+, column \d+: not valid YAML"):
        load_connectors(path)


def test_only_selects_by_key_or_glob_and_rejects_unmatched_patterns() -> None:
    file = parse_connectors(
        {"defaults": DEFAULTS, "sources": [_entry("stripe-a"), _entry("stripe-b"), _entry("pg")]}
    )
    assert [s.source_key for s in file.select(["stripe-*"])] == ["stripe-a", "stripe-b"]
    assert [s.source_key for s in file.select(None)] == ["stripe-a", "stripe-b", "pg"]
    with pytest.raises(ConnectorsFileError, match="only: 'nope' matches no source_key"):
        file.select(["pg", "nope"])
