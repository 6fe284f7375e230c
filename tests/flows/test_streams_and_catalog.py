"""Streams checked against what the connector reports, and long-tail (Airbyte catalog) connectors."""

from typing import Any

import pytest
from prefect.blocks.system import Secret

from splendor_emulator import Emulator
from splendor_emulator.catalog import definition_id
from splendor_flows.flows.connect_source import connect_source
from splendor_flows.specs.source import SourceSpec
from tests.flows.conftest import mutating_counts, stripe_spec

# Asana is in the emulator's long tail only: not a curated provider, reachable through the catalog.
ASANA = definition_id("airbyte/source-asana")


def asana_spec(source_key: str, **overrides: Any) -> SourceSpec:
    values: dict[str, Any] = dict(
        source_definition_id=ASANA,
        source_key=source_key,
        dataset_id="work",
        bucket="acme-connectors",
        iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
        streams=["tasks"],
        credentials_secret="asana-test-credentials",
    )
    values.update(overrides)
    return SourceSpec(**values)


@pytest.fixture
async def asana_secret() -> str:
    await Secret(value={"api_token": "asana-canary-token-7c1d", "start_date": "2026-01-01"}).save(
        "asana-test-credentials", overwrite=True
    )
    return "asana-test-credentials"


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


async def test_non_default_stream_onboards_and_syncs(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    # `subscriptions` is not in stripe's default_streams, but the connector has it.
    summary = await connect_source(spec=stripe_spec(source_key, streams=["charges", "subscriptions"]))

    assert summary.status == "succeeded" and summary.records_synced
    files = sorted(emulator.bucket_root.rglob(f"{source_key}/*/run-{summary.run_id}.jsonl"))
    assert {f.parent.name for f in files} == {"charges", "subscriptions"}


async def test_unknown_stream_names_it_and_the_real_ones(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    before = mutating_counts(emulator)
    state = await connect_source(
        spec=stripe_spec(source_key, streams=["charges", "unicorns"]), return_state=True
    )
    message = str(state.message)

    assert state.is_failed()
    assert "unknown stream(s) unicorns" in message
    # The list comes from discovery: it has the non-default streams too.
    assert "charges, customers, invoices, refunds, subscriptions" in message
    changed = delta(before, mutating_counts(emulator))
    assert changed["connect"] == 0 and changed["sync"] == 0 and changed["enqueue"] == 0


async def test_catalog_connector_onboards_end_to_end(
    emulator: Emulator, source_key: str, asana_secret: str
) -> None:
    before = mutating_counts(emulator)
    summary = await connect_source(spec=asana_spec(source_key))

    assert summary.status == "succeeded" and summary.records_synced
    assert summary.ingest_status == "ready"
    changed = delta(before, mutating_counts(emulator))
    assert changed["create"] == 1 and changed["provision"] == 1 and changed["connect"] == 1
    created = next(s for s in emulator.sources("acme") if s["source_key"] == source_key)
    assert created["airbyte"]["airbyte_source_definition_id"] == ASANA
    files = sorted(emulator.bucket_root.rglob(f"{source_key}/*/run-{summary.run_id}.jsonl"))
    assert {f.parent.name for f in files} == {"tasks"}


async def test_catalog_connector_bad_credentials_refused_before_any_call(
    emulator: Emulator, source_key: str
) -> None:
    await Secret(value={"token": "asana-canary-wrong-field"}).save("asana-bad-credentials", overwrite=True)
    before = mutating_counts(emulator)
    state = await connect_source(
        spec=asana_spec(source_key, credentials_secret="asana-bad-credentials"), return_state=True
    )
    message = str(state.message)

    assert state.is_failed()
    assert "api_token: is required" in message
    assert "asana-canary-wrong-field" not in message
    assert mutating_counts(emulator) == before


async def test_unknown_definition_is_refused(emulator: Emulator, source_key: str) -> None:
    before = mutating_counts(emulator)
    state = await connect_source(
        spec=asana_spec(source_key, source_definition_id="no-such-definition"), return_state=True
    )
    assert state.is_failed()
    assert "unknown source_definition_id 'no-such-definition'" in str(state.message)
    assert "catalog search" in str(state.message)
    assert mutating_counts(emulator) == before
