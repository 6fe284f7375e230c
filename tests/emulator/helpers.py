"""Shared helpers for the emulator tests: identities, request bodies and polling."""

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from splendor_emulator import EmulatorConfig

T = TypeVar("T")

ADMIN = "acme-admin-token"
MEMBER = "acme-member-token"
GLOBEX = "globex-user-token"
API_KEY = "spltk.v1.YWNtZQ.local-demo-key"
ARN = "arn:aws:iam::123456789012:role/acme-splendor"

# Fast clocks: a sync attempt takes 0.3 s, an ingest step 0.05 s; small streams keep files tiny.
FAST = {"sync_seconds": 0.3, "ingest_seconds": 0.05, "records_per_stream": 7}


def fast_config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(**{**FAST, **overrides})


def source_body(source_key: str = "stripe", provider_key: str = "stripe", **extra: Any) -> dict[str, Any]:
    """The guide's example request (§4.5), with the key and provider swappable."""
    return {
        "provider_key": provider_key,
        "connector_key": provider_key,
        "connector_name": provider_key.title(),
        "source_key": source_key,
        "source_name": source_key.title(),
        "dataset_id": source_key,
        "bucket": "acme-connectors",
        "iam_role_arn": ARN,
        **extra,
    }


STRIPE_CONFIG = {"api_key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "account_id": "acct_1032D82eZvKYlo2C"}


def connected_source(client: httpx.Client, source_key: str = "stripe") -> int:
    """Create + provision + connect a Stripe source; returns its id."""
    created = client.post("/v1/admin/airbyte-sources", json=source_body(source_key))
    assert created.status_code == 200, created.text
    source_id: int = created.json()["source"]["source_id"]
    provisioned = client.post(
        f"/v1/admin/airbyte-sources/{source_id}/provision", json={"source_configuration": STRIPE_CONFIG}
    )
    assert provisioned.status_code == 200, provisioned.text
    connected = client.post(f"/v1/admin/airbyte-sources/{source_id}/connection")
    assert connected.status_code == 200, connected.text
    return source_id


def wait_run(
    client: httpx.Client, run_id: int, timeout: float = 10.0, poll: float = 0.05
) -> list[dict[str, Any]]:
    """Poll a run until it is terminal; returns every run state seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.post(f"/v1/admin/airbyte-runs/{run_id}/refresh")
        assert response.status_code == 200, response.text
        run = response.json()["run"]
        seen.append(run)
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(poll)
    raise AssertionError(f"run {run_id} did not finish: {seen[-1] if seen else None}")


def wait_until(what: str, condition: Callable[[], T], timeout: float = 10.0, poll: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` at the
    deadline. Waiting for the condition itself, not a fixed time, holds on a loaded machine too."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return value


def wait_ingest_ready(client: httpx.Client, ids: list[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = [client.get(f"/v1/ingest/runs/{i}").json() for i in ids]
        if all(i["status"] in ("ready", "failed") for i in items):
            return items
        time.sleep(0.05)
    raise AssertionError(f"ingest runs not terminal: {[i['status'] for i in items]}")
