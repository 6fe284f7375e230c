"""The create step's conversation with the API (tasks/source.py `resolve_source`), on a scripted API:
a source exists exactly once, and a 409 `source_key_exists` resolves to the source it names."""

import copy
import logging
from typing import Any

import httpx
import pytest
from clientkit import ClientFactory, Recorder, fixture

from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.orchestration.scope import Scope
from splendor_flows.specs.source import SourceSpec
from splendor_flows.tasks.discover import ProviderDetails
from splendor_flows.tasks.source import resolve_source

KEY = "stripe-a"
SCOPE = Scope(api_base="http://splendor.test", tenant="acme", source_key=KEY, sync_id="s-1")
SPEC = SourceSpec(
    provider_key="stripe",
    source_key=KEY,
    dataset_id="app-logs",
    bucket="acme-logs",
    iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
)
PROVIDER = ProviderDetails(
    provider_key="stripe",
    auth_mode="api_key",
    oauth_mode="none",
    default_streams=["charges"],
    connection_specification={},
)
LOG = logging.getLogger("tests.source_step")


def state_of(source_id: int, key: str, provider_key: str = "stripe") -> dict[str, Any]:
    """GET /v1/admin/airbyte-sources/{id}: the documented example, renamed."""
    body: dict[str, Any] = copy.deepcopy(fixture("get_airbyte_source_response.json"))
    body["source"] |= {"source_id": source_id, "source_key": key}
    body["airbyte"] |= {"source_id": source_id, "provider_key": provider_key}
    return body


def api(
    *, conflict: dict[str, Any], state: dict[str, Any], lists: tuple[list[dict[str, Any]], ...] = ([],)
) -> Recorder:
    """A tenant whose source list (one answer per read, the last one repeating) does not show, at
    first, the source that a create then collides with."""
    pending = list(lists)

    def answer(request: httpx.Request) -> httpx.Response:
        route = (request.method, request.url.path)
        if route == ("GET", "/v1/admin/sources"):
            listed = pending.pop(0) if len(pending) > 1 else pending[0]
            return httpx.Response(200, json={"sources": listed})
        if route == ("POST", "/v1/admin/airbyte-sources"):
            return httpx.Response(409, json={"detail": conflict})
        if route == ("GET", f"/v1/admin/airbyte-sources/{state['source']['source_id']}"):
            return httpx.Response(200, json=state)
        return httpx.Response(404, json={"detail": f"unexpected {route}"})

    return Recorder(answer)


def conflict(source_id: int | None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "code": "source_key_exists",
        "message": f"A source with key '{KEY}' already exists",
    }
    return detail if source_id is None else {**detail, "source_id": source_id}


async def test_409_adopts_the_source_it_names_when_the_list_misses_it(make_client: ClientFactory) -> None:
    # Created concurrently (another run, the console) after the list was read, or beyond a list
    # the server cut short: the list never shows it, the 409 does.
    recorder = api(conflict=conflict(31), state=state_of(31, KEY))

    ref = await resolve_source(make_client(recorder), SCOPE, SPEC, PROVIDER, LOG)

    assert (ref.source_id, ref.created) == (31, False)
    calls = [(r.method, r.url.path) for r in recorder.requests]
    assert calls.count(("POST", "/v1/admin/airbyte-sources")) == 1
    assert ("GET", "/v1/admin/airbyte-sources/31") in calls


async def test_409_naming_a_source_of_another_provider_is_refused(make_client: ClientFactory) -> None:
    recorder = api(conflict=conflict(31), state=state_of(31, KEY, provider_key="hubspot"))
    with pytest.raises(PermanentStepError, match=r"provider 'hubspot'.*not provider 'stripe'"):
        await resolve_source(make_client(recorder), SCOPE, SPEC, PROVIDER, LOG)


async def test_409_naming_a_source_with_another_key_is_refused(make_client: ClientFactory) -> None:
    recorder = api(conflict=conflict(31), state=state_of(31, "someone-else"))
    with pytest.raises(PermanentStepError, match="source 31, whose key is 'someone-else'"):
        await resolve_source(make_client(recorder), SCOPE, SPEC, PROVIDER, LOG)
    assert not any(r.method == "PUT" for r in recorder.requests)


async def test_409_without_a_source_id_falls_back_to_the_list(make_client: ClientFactory) -> None:
    state = state_of(31, KEY)
    # The first list read misses the source; the read after the 409 shows it.
    recorder = api(conflict=conflict(None), state=state, lists=([], [state["source"]]))
    ref = await resolve_source(make_client(recorder), SCOPE, SPEC, PROVIDER, LOG)
    assert (ref.source_id, ref.created) == (31, False)
