"""What the checkpoints rely on in Prefect: the result store's record layout and calls, the cache
policy hook, and how a task call reports a checkpoint hit. Fails when a Prefect upgrade changes them."""

import inspect
import json
from datetime import timedelta
from pathlib import Path

from prefect import State
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultRecord, ResultStore
from prefect.serializers import JSONSerializer

from splendor_api.models import RunStatus
from splendor_flows.engine.results import FinishedRun, StartedRun
from splendor_flows.engine.scope import Step
from splendor_flows.engine.store import checkpoint_key
from splendor_flows.orchestration.checkpoint import StepCheckpoint
from splendor_flows.orchestration.prefect_compat import TaskResultCheckpoints
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.secret_masking import remember_secrets
from splendor_flows.tasks.ingest import await_ingest_ready, enqueue_ingest
from splendor_flows.tasks.sync import poll_run, start_sync

SCOPE = Scope(
    api_base="http://splendor.test",
    tenant="acme",
    source_key="stripe/prod",
    sync_id="s-1",
    credentials_block="creds",
)
STARTED = StartedRun(run_id=7, attempt=1, attached=False, status=RunStatus.PENDING)


async def _checkpoints(root: Path, ttl: timedelta = timedelta(days=1)) -> TaskResultCheckpoints:
    # The result storage is given, so configuring the store for the task needs no Prefect API.
    base = ResultStore(result_storage=LocalFileSystem(basepath=str(root)))
    return TaskResultCheckpoints(await base.aupdate_for_task(start_sync), ttl)


async def test_the_store_is_configured_as_the_task_writes_its_results(tmp_path: Path) -> None:
    store = await ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path))).aupdate_for_task(
        start_sync
    )
    assert isinstance(store.serializer, JSONSerializer)


async def test_a_checkpoint_is_a_record_a_task_cache_hit_can_return(tmp_path: Path) -> None:
    key = checkpoint_key(Step.SYNC, SCOPE, attempt=1)
    await (await _checkpoints(tmp_path)).put(key, STARTED)
    path = tmp_path / key
    assert path.is_file(), "the record lives at the cache key, as the task's transaction looks for it"
    envelope = json.loads(path.read_bytes())
    assert set(envelope) >= {"metadata", "result"} and envelope["metadata"]["expiration"]
    # What a cached task returns: the model itself, not a dict.
    assert ResultRecord.deserialize(path.read_bytes()).result == STARTED
    assert await (await _checkpoints(tmp_path)).get(key, StartedRun) == STARTED


async def test_missing_expired_and_foreign_records_read_as_absent(tmp_path: Path) -> None:
    checkpoints = await _checkpoints(tmp_path)
    assert await checkpoints.get("splendor-v1/none", StartedRun) is None
    await (await _checkpoints(tmp_path, ttl=timedelta(seconds=-1))).put("old", STARTED)
    assert await (await _checkpoints(tmp_path)).get("old", StartedRun) is None
    await checkpoints.put("other", STARTED)
    assert await (await _checkpoints(tmp_path)).get("other", FinishedRun) is None


def test_the_step_tasks_key_their_checkpoints_as_the_fleet_does() -> None:
    """The per-step tasks and the fleet's store must agree on every key, or neither resumes the other."""
    keys = {
        start_sync: (
            {"scope": SCOPE, "source_id": 3, "attempt": 2, "trigger": "manual"},
            {"source_id": 3, "attempt": 2},
        ),
        poll_run: ({"scope": SCOPE, "run_id": 9, "poll": None}, {"run_id": 9}),
        enqueue_ingest: ({"scope": SCOPE, "source_id": 3, "run_id": 9, "look_first": False}, {"run_id": 9}),
        await_ingest_ready: ({"scope": SCOPE, "run_id": 9, "ingest_run_ids": ["i"]}, {"run_id": 9}),
    }
    for task, (inputs, ordinals) in keys.items():
        policy = task.cache_policy
        assert isinstance(policy, StepCheckpoint), f"Prefect replaced the policy of {task.name}"
        assert task.persist_result is True
        expected = checkpoint_key(Step(task.name), SCOPE, **ordinals)
        assert policy.compute_key(None, inputs, {}) == expected  # type: ignore[arg-type]


def test_prefect_calls_the_policy_as_it_is_written() -> None:
    names = list(inspect.signature(CachePolicy.compute_key).parameters)
    assert names == ["self", "task_ctx", "inputs", "flow_parameters", "kwargs"]


def test_a_checkpoint_hit_is_a_state_named_cached() -> None:
    """`call_task` tells a checkpoint hit by the state's name; the resume tests in tests/flows depend
    on it too (a checkpointed attempt must not count against max_sync_attempts)."""
    import prefect.task_engine

    assert inspect.getsource(prefect.task_engine).count('terminal_state.name = "Cached"') == 2
    assert inspect.iscoroutinefunction(State.aresult)


async def test_a_checkpoint_masks_the_secrets_its_context_handled(tmp_path: Path) -> None:
    # A failed run's error_message quoting the token (an upstream quoting the request it was given).
    token = 'canary-"tok"-secret'
    finished = FinishedRun(
        run_id=9,
        status=RunStatus.FAILED,
        records_synced=None,
        bytes_synced=None,
        error_message=f"refused Authorization: Bearer {token}",
        duration_seconds=3.0,
        polls=2,
    )
    key = checkpoint_key(Step.POLL, SCOPE, run_id=9)
    remember_secrets([token])
    await (await _checkpoints(tmp_path)).put(key, finished)
    stored = (tmp_path / key).read_bytes()
    assert b"canary" not in stored and b"Bearer ***" in stored
    read = await (await _checkpoints(tmp_path)).get(key, FinishedRun)
    assert read == finished.model_copy(update={"error_message": "refused Authorization: Bearer ***"})
