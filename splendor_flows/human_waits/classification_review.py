"""Field classification, at the level of the flow run: propose, publish, wait for an admin, apply.

After discovery (credentials ready, before the connection), a spec with `classification: review`
proposes which fields are document text, vocabulary or filters (`engine.classification.propose`),
publishes the proposal as a table artifact, and waits for an admin's answer in the run's resume form:
approve (the field lists come pre-filled with the proposal and can be edited) or reject. The approved
classification is applied with `PUT /v1/admin/sources/{id}` and announced by the
`splendor.classification.applied` event (field names per role, nothing else). `classification: auto`
applies the proposal without waiting. An explicit search_config / semantic_config in the spec wins:
no proposal, no wait (the create step applied the spec's config).

The wait is the flow run's, like the OAuth consent's (`human_waits.admin_wait`): a deployment run
suspends and releases its worker, a local run pauses. A task cannot hold it: a task cannot suspend,
and a retried task would publish a second proposal.

Asking once: the apply step is checkpointed (same sync_id: no question, no call), and a source whose
config already names fields was classified before (an earlier run, a connectors file, the console):
Splendor keeps the answer, so a run given a new sync_id does not ask again either. A rejection or an
answer that names unknown fields ends the run with nothing applied. The answer is not secret and stays
on the run as the record of what the admin decided: a Retry of the same run, or the resume of an
attempt that crashed, reads it again and does what it says (a rejected run fails again with the same
rejection, an approval is applied) without asking; a new run with the same sync_id asks afresh. Only an
answer that no longer fits this run's proposal (discovery changed) is asked again, with the proposal
published and logged as the first time.
"""

from typing import Any, Literal, cast

from prefect import get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.input import RunInput
from pydantic import Field, create_model

from splendor_api import models
from splendor_flows.engine.classification import (
    AppliedClassification,
    Classification,
    ClassificationMode,
    ReviewRefused,
    Role,
    is_classified,
    propose,
    reviewed,
    streams_to_classify,
)
from splendor_flows.engine.errors import PermanentStepError
from splendor_flows.engine.report import Event
from splendor_flows.engine.store import checkpoint_key
from splendor_flows.human_waits.admin_wait import earlier_answer, wait_for_admin
from splendor_flows.orchestration.artifact_slugs import artifact_slug
from splendor_flows.orchestration.checkpoint import CHECKPOINT_TTL, step_options
from splendor_flows.orchestration.events import emit
from splendor_flows.orchestration.prefect_compat import TaskResultCheckpoints
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.splendor_clients import open_client
from splendor_flows.specs.source import SourceSpec

STEP = "classify"
TEXT_HELP = "Fields searched and embedded as document text."
VOCABULARY_HELP = "Categorical fields: a small set of values users search by."


class ClassificationReview(RunInput):
    """The resume form of a run waiting for a classification review."""

    decision: Literal["approve", "reject"] = Field(
        default="approve",
        description="approve: apply the field lists below (as proposed or edited); reject: apply "
        "nothing and end the run.",
    )
    text_fields: list[str] = Field(default_factory=list, description=TEXT_HELP)
    vocabulary_fields: list[str] = Field(default_factory=list, description=VOCABULARY_HELP)
    comment: str = Field(
        default="", max_length=500, description="Why (logged; with reject, the run's failure says it)."
    )


def review_form(scope: Scope, proposal: Classification) -> type[ClassificationReview]:
    """The form for this proposal: its lists pre-filled with the proposed roles, and each list item
    limited to the classified fields, so the server refuses an unknown name when the form is sent and
    the run stays waiting for a valid answer."""
    names = tuple(proposal.field_names())  # never empty: a proposal without fields is not reviewed
    # A Literal built from data: valid for pydantic, which emits it as a JSON-schema enum.
    names_list = cast(Any, list)[cast(Any, Literal)[names]]
    form = create_model(
        "ClassificationReview",
        __base__=ClassificationReview,
        text_fields=(names_list, Field(default=proposal.names(Role.TEXT), description=TEXT_HELP)),
        vocabulary_fields=(
            names_list,
            Field(default=proposal.names(Role.VOCABULARY), description=VOCABULARY_HELP),
        ),
    )
    # Shown above the form in the UI's resume dialog.
    form._description = (
        f"Review the classification of **{scope.source_key}** proposed in this run's artifact "
        f"`{artifact_key(scope)}`. Fields in neither list are filters."
    )
    return form


def artifact_key(scope: Scope) -> str:
    return f"splendor-{artifact_slug(scope.source_key)}-classification"


async def publish_proposal(scope: Scope, proposal: Classification, mode: ClassificationMode) -> None:
    what = "applied as proposed" if mode == "auto" else "approve, edit or reject it in this run's resume form"
    await acreate_table_artifact(
        table=proposal.table(),
        key=artifact_key(scope),
        description=f"Proposed classification of the fields of {scope.source_key}: {what}.",
    )


@task(name="classify", **step_options(STEP, ordinals=("source_id",)))
async def apply_classification(
    scope: Scope, source_id: int, classification: Classification, mode: ClassificationMode
) -> AppliedClassification:
    """PUT the classification's search / semantic config. Keyed on the source only: once applied in
    this sync, the step is done whatever was decided (the flow looks the checkpoint up before asking)."""
    async with open_client(scope.credentials_block) as client:
        # The PUT sets the whole search / semantic config, so sending it again after an unknown outcome
        # leaves the same state: unlike a create or a start, it may be retried without reading first.
        await client.update_source(source_id, classification.to_update())
    applied = AppliedClassification(source_id=source_id, mode=mode, roles=classification.roles())
    emit(Event.CLASSIFICATION_APPLIED, scope, {"source_id": source_id, "mode": mode, **applied.roles})
    get_run_logger().info("Classification of source %s %s", source_id, applied.describe())
    return applied


async def _checkpointed(scope: Scope, source_id: int) -> AppliedClassification | None:
    store = await TaskResultCheckpoints.for_task(apply_classification, CHECKPOINT_TTL)
    return await store.get(checkpoint_key(STEP, scope, source_id=source_id), AppliedClassification)


async def _ask_admin(
    scope: Scope, spec: SourceSpec, source_id: int, proposal: Classification
) -> Classification:
    pause_key = f"classify-{source_id}"
    timeout = spec.classification_timeout_seconds
    form = review_form(scope, proposal)
    # Answered already: a suspended run started again, or a Retry or a crashed attempt's resume of
    # this run. The answer stands; asking again would delete it (see human_waits.admin_wait).
    answer = await earlier_answer(form, pause_key)
    if answer is not None:
        get_run_logger().info(
            "The classification of '%s' was answered in this run's resume form already (%s): "
            "that answer stands, not asked again",
            scope.source_key,
            answer.decision,
        )
    else:
        await publish_proposal(scope, proposal, "review")
        get_run_logger().info(
            "Waiting up to %s s for an admin to review the classification of '%s' (artifact %s)",
            timeout,
            scope.source_key,
            artifact_key(scope),
        )
        answer = await wait_for_admin(
            form,
            pause_key=pause_key,
            timeout_seconds=timeout,
            unanswered=PermanentStepError(
                STEP,
                scope.source_key,
                f"nobody reviewed the proposed classification within {timeout} s; nothing was applied",
                "start a new run with the same sync_id to be asked again",
            ),
        )
    comment = f" ({answer.comment})" if answer.comment else ""
    if answer.decision == "reject":
        raise PermanentStepError(
            STEP,
            scope.source_key,
            f"the admin rejected the proposed classification{comment}; nothing was applied",
            "write search_config / semantic_config in the spec, or start a new run with the same "
            "sync_id to be asked again",
        )
    try:
        approved = reviewed(proposal, answer.text_fields, answer.vocabulary_fields)
    except ReviewRefused as exc:
        raise PermanentStepError(
            STEP,
            scope.source_key,
            f"the reviewed classification cannot be applied: {exc}; nothing was applied",
            "start a new run with the same sync_id to be asked again",
        ) from None
    get_run_logger().info("Classification of '%s' approved%s", scope.source_key, comment)
    return approved


async def classify_source(
    scope: Scope,
    spec: SourceSpec,
    source_id: int,
    default_streams: list[str],
    discovered: list[models.StreamSchema],
    *,
    force: bool,
) -> str:
    """Apply the spec's classification mode to the source; returns the step's line in the summary."""
    logger = get_run_logger()
    if not force:
        done = await _checkpointed(scope, source_id)
        if done is not None:
            return done.describe()
    async with open_client(scope.credentials_block, step=STEP, source_key=scope.source_key) as client:
        source = (await client.get_airbyte_source(source_id)).source
    if is_classified(source):
        logger.info("Source %s is classified already (its config names fields): kept as it is", source_id)
        return "kept: the source is classified already"
    proposal = propose(discovered, streams_to_classify(spec.streams, default_streams, discovered))
    if not proposal.fields:
        logger.warning("Discovery reported no fields for the synced streams: nothing to classify")
        return "no fields to classify"
    if spec.classification == "auto":
        await publish_proposal(scope, proposal, "auto")
        approved = proposal.model_copy(update={"source": "approved"})
    else:
        approved = await _ask_admin(scope, spec, source_id, proposal)
    task_ = apply_classification.with_options(refresh_cache=True) if force else apply_classification
    applied = await task_(scope, source_id, approved, spec.classification)
    return applied.describe()
