"""Checkpoints of the per-step tasks: Prefect's persisted JSON result under the engine's key.

The key is `engine.store.checkpoint_key` of (step, scope, ordinal inputs): the same function the
fleet's store uses, so a pipeline either of them left unfinished can be resumed by the other. Each
task names its step and its ordinal parameters explicitly (`step_options`); nothing is derived from
the task's name or guessed from its parameters. See `engine.store` for what the key leaves out and
why.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.serializers import JSONSerializer
from pydantic import Field

from splendor_flows.engine.errors import is_transient
from splendor_flows.engine.store import CACHE_VERSION, checkpoint_key
from splendor_flows.orchestration.secret_masking import masked_json

__all__ = [
    "CACHE_VERSION",
    "CHECKPOINT_TTL",
    "STEP_OPTIONS",
    "StepCheckpoint",
    "retry_only_transient",
    "step_options",
]

CHECKPOINT_TTL = timedelta(days=14)


@dataclass(kw_only=True)
class StepCheckpoint(CachePolicy):
    """The cache policy of one pipeline step.

    `scope_param` names the task parameter holding the `Scope`; `ordinals` name the parameters that
    tell repeats of the step apart within one sync (a re-started sync's attempt, its run id); `inputs`
    name the other parameters its result depends on (a spec edited before a resume re-runs the step).
    """

    step: str
    scope_param: str = "scope"
    ordinals: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        ordinals = {name: inputs[name] for name in self.ordinals}
        bound = {name: inputs.get(name) for name in self.inputs}
        return checkpoint_key(self.step, inputs[self.scope_param], inputs=bound, **ordinals)


async def retry_only_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Refuse a Prefect retry when the HTTP layer already retried or another try cannot help.

    Without this the two layers multiply: 6 HTTP attempts x 3 task attempts on every outage. A
    StepError is the pipeline's own verdict (permanent, a deadline the user chose, or the sync
    attempts spent), never a glitch. Async on purpose: in an async context `state.result()` returns
    a coroutine instead of raising.
    """
    try:
        await state.aresult()
    except Exception as exc:
        return is_transient(exc)
    return False


class MaskingJSONSerializer(JSONSerializer[Any]):
    """Prefect's JSON serializer, with the secrets this context handled masked in what it writes.

    A step's result can quote Splendor (a failed run's `error_message`), and an upstream may quote what
    it was given, a token or a key; checkpoints are plain files in result storage. Each record names
    its serializer, and this one reads as JSON does, so checkpoints written with plain `json` still read.
    """

    type: str = Field(default="splendor-masked-json", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return masked_json(super().dumps(obj))


# What every checkpointed task shares, minus the cache policy: a task brings its own (pipeline steps
# get theirs from `step_options`; uploads key on the file instead). The fleet's store writes through
# the same serializer (prefect_compat.TaskResultCheckpoints).
# The retry rule of a pipeline step, for the step tasks here and for a fleet's sources (which run the
# steps without task runs, fleet.source): a failure another try could fix (`retry_only_transient`) is
# tried again after each of these pauses, each stretched or shrunk by up to the jitter factor.
STEP_RETRY_DELAYS_SECONDS: tuple[float, ...] = (2.0, 10.0)
STEP_RETRY_JITTER = 0.5

STEP_OPTIONS: dict[str, Any] = dict(
    persist_result=True,
    result_serializer=MaskingJSONSerializer(),
    cache_expiration=CHECKPOINT_TTL,
    retries=len(STEP_RETRY_DELAYS_SECONDS),
    retry_delay_seconds=list(STEP_RETRY_DELAYS_SECONDS),
    retry_jitter_factor=STEP_RETRY_JITTER,
    retry_condition_fn=retry_only_transient,
)


def step_options(
    step: str,
    *,
    ordinals: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    scope_param: str = "scope",
    **overrides: Any,
) -> dict[str, Any]:
    """`@task` options of the pipeline step `step`: its checkpoint policy, persistence and retries."""
    policy = StepCheckpoint(step=step, scope_param=scope_param, ordinals=ordinals, inputs=inputs)
    return STEP_OPTIONS | {"cache_policy": policy} | overrides
