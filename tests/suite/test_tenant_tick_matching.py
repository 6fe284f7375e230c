"""The stack tenant test's rule for counting a source's syncs against its schedule ticks
(tests/e2e_stack/test_stack_tenant.py): each tick needs a sync of its own within its allowance."""

from typing import Any

from tests.e2e_stack.test_stack_tenant import ALLOWANCE_SECONDS, EARLY_SECONDS, syncs_per_tick, unsynced_ticks

START = 1_000.0


def spans(*began: float) -> dict[str, list[tuple[float, float, dict[str, Any]]]]:
    return {"src": [(START + b, START + b + 5, {}) for b in began]}


def test_one_sync_per_tick_answers_both() -> None:
    assert syncs_per_tick(spans(2, 63), START) == {"src": [START + 2, START + 63]}
    assert unsynced_ticks(spans(2, 63), START) == []


def test_one_late_sync_never_counts_for_two_ticks() -> None:
    # A single sync inside both ticks' allowances answers the first only: the second tick has none.
    assert unsynced_ticks(spans(70), START) == [("src", 1)]


def test_a_sync_just_before_its_tick_counts_and_one_too_early_does_not() -> None:
    assert unsynced_ticks(spans(-EARLY_SECONDS, 60), START) == []
    assert unsynced_ticks(spans(-EARLY_SECONDS - 1, 60), START) == [("src", 1)]


def test_a_sync_after_the_allowance_answers_no_tick() -> None:
    late = 60 + ALLOWANCE_SECONDS + 1
    assert unsynced_ticks(spans(1, late), START) == [("src", 1)]
