"""Flow tests: one Prefect test harness for the session, the emulator on a loopback port."""

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splendor_emulator import Emulator, EmulatorConfig, running_emulator

# Mutating routes, as the emulator names them in its counters.
MUTATING = {
    "create": "POST /v1/admin/airbyte-sources",
    "provision": "POST /v1/admin/airbyte-sources/{source_id}/provision",
    "oauth": "POST /v1/admin/airbyte-sources/{source_id}/oauth/complete",
    "connect": "POST /v1/admin/airbyte-sources/{source_id}/connection",
    "sync": "POST /v1/admin/airbyte-sources/{source_id}/sync",
    "enqueue": "POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest",
    "update": "PUT /v1/admin/sources/{source_id}",
}

TEST_ENV = {
    "SPLENDOR_TENANT_ID": "acme",
    "SPLENDOR_TOKEN": "acme-admin-token",
    # Keep the HTTP layer's retry budget short so a step under a permanent fault fails fast.
    "SPLENDOR_MAX_ATTEMPTS": "3",
    "SPLENDOR_MAX_RETRY_SECONDS": "3",
    "SPLENDOR_READ_TIMEOUT": "3",
}


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(prefect_harness: Path) -> Path:
    """Every test here runs under the Prefect test server of tests/conftest.py.

    This same-named fixture only makes it autouse for the packages that import it (cli, compat, fleet,
    reliability do): the server itself is defined once, in the root conftest, so one process starts one,
    however many of these packages its tests come from.
    """
    return prefect_harness


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    config = EmulatorConfig(
        sync_seconds=0.6, ingest_seconds=0.05, bucket_root=tmp_path_factory.mktemp("buckets")
    )
    with running_emulator(config) as emu:
        yield emu


@pytest.fixture(autouse=True)
def splendor_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SPLENDOR_API_BASE", emulator.base_url)
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    emulator.clear_faults()
    yield
    emulator.clear_faults()


_counter = itertools.count(1)


@pytest.fixture
def source_key(request: pytest.FixtureRequest) -> str:
    name = request.node.name.split("[")[0].replace("test_", "")[:40].replace("_", "-")
    return f"{name}-{next(_counter)}"


@pytest.fixture
async def stripe_secret() -> str:
    from prefect.blocks.system import Secret

    await Secret(
        value={
            "api_key": "sk_test_canary-cred-4f1b9e",
            "account_id": "acct_test1",
            "start_date": "2026-01-01",
        }
    ).save("stripe-test-credentials", overwrite=True)
    return "stripe-test-credentials"


def stripe_spec(source_key: str, **overrides: Any) -> Any:
    from splendor_flows.specs.source import SourceSpec

    values: dict[str, Any] = dict(
        provider_key="stripe",
        source_key=source_key,
        dataset_id="payments",
        bucket="acme-connectors",
        iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
        streams=["charges", "customers"],
        credentials_secret="stripe-test-credentials",
    )
    values.update(overrides)
    return SourceSpec(**values)


def mutating_counts(emu: Emulator) -> dict[str, int]:
    counts = emu.counts()
    return {step: counts.get(route, 0) for step, route in MUTATING.items()}
