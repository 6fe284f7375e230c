"""A short chaos soak in the regular suite: six pipelines in two worker processes, with standing faults,
a SIGKILLed worker and a crashed emulator; every invariant must hold (`make soak` runs the long one)."""

from pathlib import Path

from prefect.settings import PREFECT_API_URL

from soak.runner import SoakConfig, run_soak


def test_short_soak_keeps_every_invariant(prefect_harness: Path) -> None:
    config = SoakConfig(
        pipelines=6,
        workers=2,
        batch=4,
        concurrency=4,
        sync_seconds=3.0,
        fault_scale=2.0,
        # A killed process keeps its sources' slots until their lease runs out (up to 75 s, taken back by
        # the next run: orchestration/source_lock): a few kills, then none, or kills that keep coming could
        # postpone the end again and again.
        kill_every=30.0,
        max_kills=3,
        restart_every=10.0,
        max_resumes=6,
        # A bound for a soak that cannot finish, not a speed target: on two cores shared with the other test
        # processes it needs longer to converge than alone.
        time_limit=900.0,
        # The session's Prefect test server: saves starting another one.
        api_url=str(PREFECT_API_URL.value()),
    )
    result = run_soak(config)
    assert result.findings.violations == []
    # Every pipeline ended (checked per phase by the invariants); most of them succeeded.
    assert result.phases_done >= config.pipelines
    assert sum(result.faults.values()) >= 20
    assert result.kills >= 1 and result.emulator_restarts >= 1
