"""Property tests: whatever is thrown at the API, it answers with a 2xx/4xx, never a 5xx."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splendor_emulator import Emulator, running_emulator

from .helpers import ADMIN, API_KEY, GLOBEX, MEMBER, fast_config, source_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
segment = st.one_of(
    st.integers(min_value=-5, max_value=2**66).map(str),
    st.sampled_from(["1", "2", "..", "%2e%2e", "stripe", "catalog", "ups_x", "ing_x", "\u00e9", ""]),
    st.text(min_size=1, max_size=20),
)
tokens = st.sampled_from([ADMIN, MEMBER, GLOBEX, API_KEY, "bogus", "sit_live_x", None])
tenants = st.sampled_from(["acme", "globex", "", "nope", None])

ROUTES = [
    ("GET", "/v1/me"),
    ("GET", "/v1/admin/connector-providers"),
    ("POST", "/v1/admin/connector-providers/{a}/airbyte-discovery"),
    ("GET", "/v1/admin/airbyte-catalog"),
    ("POST", "/v1/admin/airbyte-catalog/{a}/discover"),
    ("POST", "/v1/admin/airbyte-sources"),
    ("GET", "/v1/admin/airbyte-sources/{a}"),
    ("POST", "/v1/admin/airbyte-sources/{a}/provision"),
    ("POST", "/v1/admin/airbyte-sources/{a}/oauth/complete"),
    ("POST", "/v1/admin/airbyte-sources/{a}/discover-schema"),
    ("POST", "/v1/admin/airbyte-sources/{a}/connection"),
    ("POST", "/v1/admin/airbyte-sources/{a}/sync"),
    ("POST", "/v1/admin/airbyte-sources/{a}/enqueue-ingest"),
    ("POST", "/v1/admin/airbyte-runs/{a}/refresh"),
    ("GET", "/v1/admin/airbyte-runs/{a}"),
    ("POST", "/v1/admin/airbyte-runs/{a}/cancel"),
    ("GET", "/v1/admin/sources"),
    ("PUT", "/v1/admin/sources/{a}"),
    ("POST", "/v1/admin/hosted-sources"),
    ("POST", "/v1/admin/sources/{a}/ingest-token"),
    ("DELETE", "/v1/admin/sources/{a}/ingest-token"),
    ("POST", "/v1/admin/api-keys"),
    ("GET", "/v1/ingest/runs"),
    ("GET", "/v1/ingest/runs/{a}"),
    ("POST", "/v1/ingest/sources/{a}/uploads"),
    ("POST", "/v1/ingest/sources/{a}/uploads/parts"),
    ("POST", "/v1/ingest/sources/{a}/uploads/complete"),
    ("GET", "/v1/admin/hosted-uploads/{a}/readiness"),
    ("POST", "/v1/ingest/sources/{a}/logs"),
    ("PUT", "/_objects/{a}/{a}"),
    ("GET", "/_emulator/oauth/consent/{a}"),
]


def _headers(token: str | None, tenant: str | None) -> dict[str, str]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if tenant is not None:
        headers["X-Splendor-Tenant-Id"] = tenant
    return headers


def _seed(client: httpx.Client) -> None:
    """Some real state, so random ids sometimes hit existing sources, runs and uploads."""
    client.post("/v1/admin/airbyte-sources", json=source_body())
    client.post("/v1/admin/airbyte-sources", json=source_body("sf", provider_key="salesforce"))
    client.post(
        "/v1/admin/airbyte-sources/1/provision",
        json={"source_configuration": {"api_key": "sk_test_1", "account_id": "acct_1"}},
    )
    client.post("/v1/admin/airbyte-sources/1/connection")
    client.post("/v1/admin/airbyte-sources/1/sync")
    client.post("/v1/admin/hosted-sources", json={"source_key": "catalog", "name": "c", "dataset_id": "c"})


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Emulator, httpx.Client]]:
    """One seeded emulator for all examples: starting a server per example would dominate the run time."""
    with running_emulator(fast_config()) as emu, httpx.Client(base_url=emu.base_url, timeout=10) as client:
        with httpx.Client(base_url=emu.base_url, headers=_headers(ADMIN, "acme")) as admin:
            _seed(admin)
        yield emu, client


QUERY_NAMES = [
    "q",
    "status",
    "source_id",
    "dataset_id",
    "limit",
    "approve",
    "redirect_uri",
    "sig",
    "exp",
    "part",
]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_requests_never_5xx(shared: tuple[Emulator, httpx.Client], data: st.DataObject) -> None:
    _, client = shared
    method, template = data.draw(st.sampled_from(ROUTES))
    path = template.replace("{a}", quote(data.draw(segment), safe=""))
    kwargs: dict[str, Any] = {"headers": _headers(data.draw(tokens), data.draw(tenants))}
    if method in ("POST", "PUT"):
        choice = data.draw(st.integers(0, 2))
        if choice == 0:
            kwargs["json"] = data.draw(json_values)
        elif choice == 1:
            kwargs["content"] = data.draw(st.binary(max_size=64))
    kwargs["params"] = data.draw(
        st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=10), max_size=3)
    )
    response = client.request(method, path, **kwargs)
    assert response.status_code < 500, (method, path, kwargs, response.text)


_field_values = {
    "bucket": st.one_of(st.just("acme-connectors"), st.text(max_size=300)),
    "source_key": st.one_of(st.just("stripe"), st.text(max_size=140)),
    "prefix": st.one_of(st.just(""), st.just("raw/"), st.text(max_size=50)),
    "provider_key": st.one_of(
        st.sampled_from(["stripe", "salesforce", "google-drive", "nope"]), st.text(max_size=70)
    ),
    "streams": st.one_of(
        st.none(),
        st.lists(st.sampled_from(["charges", "customers", "Account", "x"]), max_size=4),
        json_values,
    ),
    "retention_days": st.one_of(st.none(), st.integers(-3, 10**20), json_values),
    "search_config": st.one_of(st.just({"text_fields": [{"field": "a"}]}), json_values),
    "semantic_config": st.one_of(
        st.just({"document_embeddings": {"fields": [{"field": "a", "max_chars": 5}]}}), json_values
    ),
}


CONFIG_NAMES = ["api_key", "account_id", "start_date", "folder_url", "lookback_window_days"]
UPDATE_NAMES = ["name", "enabled", "retention_days", "search_config", "semantic_config", "parse_config"]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_create_and_provision_bodies_never_5xx(
    shared: tuple[Emulator, httpx.Client], data: st.DataObject
) -> None:
    emu, client = shared
    headers = _headers(ADMIN, "acme")
    body = source_body()
    for name, strategy in _field_values.items():
        if data.draw(st.booleans()):
            body[name] = data.draw(strategy)
    # Draw everything before calling the server: whether a create succeeds depends on what earlier
    # examples created, and draws that depend on it make hypothesis's replays inconsistent.
    configuration = data.draw(st.dictionaries(st.sampled_from(CONFIG_NAMES), json_values, max_size=4))
    update = data.draw(st.dictionaries(st.sampled_from(UPDATE_NAMES), json_values, max_size=3))
    created = client.post("/v1/admin/airbyte-sources", json=body, headers=headers)
    assert created.status_code in (200, 404, 409, 422), created.text
    if created.status_code == 200:
        source_id = created.json()["source"]["source_id"]
        provisioned = client.post(
            f"/v1/admin/airbyte-sources/{source_id}/provision",
            json={"source_configuration": configuration},
            headers=headers,
        )
        assert provisioned.status_code in (200, 422), provisioned.text
        updated = client.put(f"/v1/admin/sources/{source_id}", json=update, headers=headers)
        assert updated.status_code in (200, 422), updated.text
    root = emu.bucket_root.resolve()
    assert all(path.resolve().is_relative_to(root) for path in emu.bucket_root.rglob("*"))
