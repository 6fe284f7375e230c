"""Bad specs fail with a message naming the field, before any mutating call."""

from typing import Any

import pytest
from pydantic import ValidationError

from splendor_emulator import Emulator
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.specs.source import SourceSpec, describe_validation_error
from tests.flows.conftest import mutating_counts, stripe_spec

BASE: dict[str, Any] = dict(
    provider_key="stripe",
    source_key="ok-key",
    dataset_id="payments",
    bucket="acme-connectors",
    iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
)

# Rejected by the spec model itself (and so by Prefect's parameter validation).
MODEL_CASES = {
    "source_key too long": ({"source_key": "k" * 129}, "source_key"),
    "source_key with a slash": ({"source_key": "../etc"}, "source_key"),
    "dataset_id too long": ({"dataset_id": "d" * 129}, "dataset_id"),
    "bad ARN": ({"iam_role_arn": "arn:aws:s3:::not-a-role"}, "iam_role_arn"),
    "bad bucket": ({"bucket": "Has_Upper"}, "bucket"),
    "bad cron": ({"schedule": {"cron": "every day at 3"}}, "schedule.cron"),
    "cron out of range": ({"schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
    "duplicate stream": ({"streams": ["charges", "charges"]}, "streams"),
    "unknown field": ({"colour": "blue"}, "colour"),
    "bad secret block name": ({"credentials_secret": "Not A Name"}, "credentials_secret"),
    "unknown classification mode": ({"classification": "manual"}, "classification: Input should be 'off'"),
    "review timeout too short": ({"classification_timeout_seconds": 5}, "classification_timeout_seconds"),
}


@pytest.mark.parametrize(
    "overrides",
    [{"source_definition_id": "d0c5a1e2-0000-4000-8000-000000000000"}, {"provider_key": None}],
    ids=["both", "neither"],
)
def test_spec_names_exactly_one_connector(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        SourceSpec(**{**BASE, **overrides})
    message = describe_validation_error(info.value)
    assert "provider_key" in message and "source_definition_id" in message


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_spec_model_rejects(case: str) -> None:
    overrides, field = MODEL_CASES[case]
    with pytest.raises(ValidationError) as info:
        SourceSpec(**{**BASE, **overrides})
    assert field in describe_validation_error(info.value)


@pytest.mark.parametrize("case", list(MODEL_CASES))
async def test_flow_parameters_rejected_before_any_call(emulator: Emulator, case: str) -> None:
    overrides, field = MODEL_CASES[case]
    before = emulator.counts()
    state = await connect_source(spec={**BASE, **overrides}, return_state=True)  # type: ignore[arg-type]
    assert state.is_failed()
    assert field.split(".")[-1] in str(state.message)
    assert emulator.counts() == before


# Rejected once the provider is known, still before anything changes remotely.
async def _expect_spec_error(emulator: Emulator, spec: SourceSpec, text: str) -> None:
    before = mutating_counts(emulator)
    state = await connect_source(spec=spec, return_state=True)
    assert state.is_failed()
    assert text in str(state.message)
    assert mutating_counts(emulator) == before


async def test_unknown_provider(emulator: Emulator, source_key: str) -> None:
    await _expect_spec_error(
        emulator, stripe_spec(source_key, provider_key="nope"), "unknown provider_key 'nope'"
    )


async def test_missing_secret_block(emulator: Emulator, source_key: str) -> None:
    spec = stripe_spec(source_key, credentials_secret="no-such-block")
    await _expect_spec_error(emulator, spec, "no Secret block named 'no-such-block'")


async def test_credentials_not_matching_connector_spec(emulator: Emulator, source_key: str) -> None:
    from prefect.blocks.system import Secret

    await Secret(value={"api_key": "pk_live_wrong-kind-canary", "start_date": "yesterday"}).save(
        "stripe-bad-credentials", overwrite=True
    )
    spec = stripe_spec(source_key, credentials_secret="stripe-bad-credentials")
    before = mutating_counts(emulator)
    state = await connect_source(spec=spec, return_state=True)
    message = str(state.message)
    assert state.is_failed()
    assert "api_key" in message and "account_id: is required" in message and "start_date" in message
    assert "pk_live_wrong-kind-canary" not in message  # the value itself is never echoed
    assert mutating_counts(emulator) == before


async def test_member_token_is_refused_clearly(
    emulator: Emulator, source_key: str, stripe_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLENDOR_TOKEN", "acme-member-token")
    before = mutating_counts(emulator)
    state = await connect_source(spec=stripe_spec(source_key), return_state=True)
    assert state.is_failed()
    assert "not an admin" in str(state.message) and "acme" in str(state.message)
    assert mutating_counts(emulator) == before
