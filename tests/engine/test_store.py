"""Checkpoint keys and the memory store."""

from splendor_api.models import RunStatus
from splendor_flows.engine.results import StartedRun
from splendor_flows.engine.store import CACHE_VERSION, MemoryStore, checkpoint_key, checkpointed
from tests.engine.fakes import FakeScope


def test_keys_are_stable_and_bound_to_what_they_mean() -> None:
    scope = FakeScope(tenant="acme", source_key="stripe/prod", sync_id="s-1")
    key = checkpoint_key("sync", scope, attempt=2)
    # The format is shared with checkpoints already stored: changing it drops every one of them.
    assert key == f"splendor-{CACHE_VERSION}/acme/stripe_prod/s-1/sync-attempt2-" + key.rsplit("-", 1)[1]
    assert len(key.rsplit("-", 1)[1]) == 16
    assert key == checkpoint_key(
        "sync", FakeScope(tenant="acme", source_key="stripe/prod", sync_id="s-1"), attempt=2
    )
    others = {
        checkpoint_key("sync", scope, attempt=3),
        checkpoint_key("poll", scope, attempt=2),
        checkpoint_key(
            "sync", FakeScope(tenant="globex", source_key="stripe/prod", sync_id="s-1"), attempt=2
        ),
        checkpoint_key("sync", FakeScope(tenant="acme", source_key="stripe_prod", sync_id="s-1"), attempt=2),
        checkpoint_key("sync", FakeScope(tenant="acme", source_key="stripe/prod", sync_id="s-2"), attempt=2),
        checkpoint_key(
            "sync",
            FakeScope(api_base="http://other.test", source_key="stripe/prod", sync_id="s-1"),
            attempt=2,
        ),
        checkpoint_key("sync", scope, inputs={"streams": ["charges"]}, attempt=2),
    }
    assert key not in others and len(others) == 7
    # Inputs are bound by value, whatever their order; ordinals whatever the keyword order.
    assert checkpoint_key("c", scope, inputs={"a": 1, "b": [2]}) == checkpoint_key(
        "c", scope, inputs={"b": [2], "a": 1}
    )
    assert checkpoint_key("s", scope, source_id=1, attempt=2) == checkpoint_key(
        "s", scope, attempt=2, source_id=1
    )


async def test_checkpointed_produces_once() -> None:
    store = MemoryStore()
    made: list[int] = []

    async def produce() -> StartedRun:
        made.append(1)
        return StartedRun(run_id=5, attempt=1, attached=False, status=RunStatus.PENDING)

    first = await checkpointed(store, "k", StartedRun, produce)
    second = await checkpointed(store, "k", StartedRun, produce)
    assert first == (second[0], False) and second[1] is True and made == [1]
