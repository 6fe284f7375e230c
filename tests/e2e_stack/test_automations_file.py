"""deployments/automations.yaml is what `prefect automation create --from-file` accepts, and its triggers
and templates do what their comments say when the server's own matching and rendering read them."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from splendor_flows.fleet.shards import shard_run_name
from splendor_flows.orchestration import automations


def test_every_automation_validates_as_prefect_reads_it() -> None:
    loaded = automations.load()
    # Block and deployment names resolve to ids on a server; any ids do for validating the rest.
    ids = {ref: str(uuid.uuid4()) for ref in automations.blocks_named(loaded)}
    deployment_ids = {ref: str(uuid.uuid4()) for ref in automations.deployments_named(loaded)}
    parsed = [AutomationCore.model_validate(automations.with_ids(a, ids, deployment_ids)) for a in loaded]
    by_name = {a.name: a for a in parsed}

    # The upload trigger runs the after-upload deployment, the one it names.
    [run_after_upload] = by_name["splendor-upload-completed"].actions
    assert getattr(run_after_upload, "deployment_id", None) == uuid.UUID(
        deployment_ids["after-upload/after-upload"]
    )

    zombie = by_name["splendor-crash-zombie-flow-runs"].trigger
    assert isinstance(zombie, EventTrigger)
    assert zombie.posture == Posture.Proactive
    assert zombie.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= zombie.expect
    assert zombie.within == timedelta(seconds=90)

    # The resume automation keys on the exact message the zombie automation writes.
    [crash] = by_name["splendor-crash-zombie-flow-runs"].actions
    resume = by_name["splendor-resume-crashed-flow-runs"].trigger
    assert isinstance(resume, EventTrigger)
    assert resume.match.root["prefect.state-message"] == getattr(crash, "message", None)


def test_no_deployment_of_prefect_yaml_has_triggers_of_its_own() -> None:
    # `prefect deploy` deletes and re-creates a deployment's triggers on every deploy, so a second deploy
    # would change them; the upload trigger is an automation of deployments/automations.yaml instead.
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    assert [d["name"] for d in document["deployments"] if d.get("triggers")] == []
    deployments = {f"{d['name']}/{d['name']}" for d in document["deployments"]}
    assert automations.deployments_named(automations.load()) == {"after-upload/after-upload"} & deployments


def test_the_zombie_window_can_be_shortened_without_touching_the_rest() -> None:
    original = automations.load()
    shorter = automations.with_zombie_window(original, 40)
    assert automations.zombie_window(shorter) == 40
    assert automations.zombie_window(original) == 90
    assert [a["name"] for a in shorter] == [a["name"] for a in original]


def test_every_splendor_event_an_automation_names_is_one_the_pipelines_publish() -> None:
    from splendor_flows.engine.report import Event

    named = {
        name
        for a in automations.load()
        for key in ("expect", "after")
        for name in a["trigger"].get(key, [])
        if name.startswith("splendor.")
    }
    assert named == {
        Event.UPLOAD_COMPLETED,
        Event.SYNC_FAILED,
        Event.INGEST_FAILED,
        Event.CREDENTIALS_WAITING,
        Event.CREDENTIALS_READY,
        Event.SYNC_SUCCEEDED,
        Event.SOURCE_STALE,
    }
    assert named <= {str(e) for e in Event}


def test_a_window_is_changed_by_name_and_an_unknown_name_is_refused() -> None:
    original = automations.load()
    changed = automations.with_windows(original, {"splendor-source-freshness": 180000})
    [freshness] = [a for a in changed if a["name"] == "splendor-source-freshness"]
    assert freshness["trigger"]["within"] == 180000
    assert [a for a in changed if a["name"] != "splendor-source-freshness"] == [
        a for a in original if a["name"] != "splendor-source-freshness"
    ]
    with pytest.raises(ValueError, match="splendor-freshness"):
        automations.with_windows(original, {"splendor-freshness": 1})


# --- the flow-run failure notifications -------------------------------------------------------------------

FLOW_RUN_NOTIFIERS = ["splendor-notify-flow-run-failed", "splendor-notify-flow-run-not-resumed"]


def server_triggers() -> dict[str, Any]:
    """Each automation's trigger as the server evaluates it (its own `covers`)."""
    from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger

    return {
        a["name"]: ServerEventTrigger.model_validate(a["trigger"])
        for a in automations.load()
        if a["trigger"]["type"] == "event"
    }


def state_event(
    state: str,
    message: str,
    run_count: int = 1,
    *,
    name: str = "amber-fox",
    tags: tuple[str, ...] = ("splendor",),
) -> Any:
    """A flow-run state-change event shaped as the server publishes it (server/models/events.py)."""
    from prefect.server.events.schemas.events import ReceivedEvent

    run_id = uuid.uuid4()
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": "sync-source",
        },
        {
            "prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
            "prefect.resource.role": "deployment",
            "prefect.resource.name": "sync-source",
        },
    ] + [{"prefect.resource.id": f"prefect.tag.{t}", "prefect.resource.role": "tag"} for t in tags]
    return ReceivedEvent(
        id=uuid.uuid4(),
        occurred=datetime.now(UTC),
        event=f"prefect.flow-run.{state}",
        resource={
            "prefect.resource.id": f"prefect.flow-run.{run_id}",
            "prefect.resource.name": name,
            "prefect.run-count": str(run_count),
            "prefect.state-message": message,
            "prefect.state-name": state,
            "prefect.state-type": "FAILED" if state in ("Failed", "TimedOut") else state.upper(),
        },
        related=related,
    )


def firing(event: Any) -> set[str]:
    watched = ["splendor-resume-crashed-flow-runs", *FLOW_RUN_NOTIFIERS]
    triggers = server_triggers()
    return {name for name in watched if triggers[name].covers(event)}


def test_a_failed_run_notifies_and_a_crash_notifies_once_nobody_resumes_it() -> None:
    from splendor_flows.fleet.shards import ZOMBIE_MESSAGE

    failed = "Flow run encountered an exception: PermanentStepError: [sync] source 'x': no such source"
    assert firing(state_event("Failed", failed)) == {"splendor-notify-flow-run-failed"}
    assert firing(state_event("TimedOut", "Flow run exceeded timeout of 60.0 second(s)")) == {
        "splendor-notify-flow-run-failed"
    }
    # A run failed by hand, with no message, still notifies.
    assert firing(state_event("Failed", "")) == {"splendor-notify-flow-run-failed"}
    assert firing(state_event("Crashed", "Flow run infrastructure exited with non-zero status code 1.")) == {
        "splendor-notify-flow-run-failed"
    }
    # A zombie crash is rescheduled twice without a notification; the third is not, and notifies.
    for run_count in (1, 2):
        assert firing(state_event("Crashed", ZOMBIE_MESSAGE, run_count)) == {
            "splendor-resume-crashed-flow-runs"
        }
    for run_count in (3, 9, 10, 123):
        assert firing(state_event("Crashed", ZOMBIE_MESSAGE, run_count)) == {
            "splendor-notify-flow-run-not-resumed"
        }
    # Runs of other projects, and a sharded fleet's children (their parent reports them), do not.
    assert firing(state_event("Failed", failed, tags=("other",))) == set()
    assert firing(state_event("Failed", failed, name=shard_run_name(str(uuid.uuid4()), 2, 4))) == set()
    assert firing(state_event("Completed", "")) == set()


def test_the_flow_run_notification_names_the_run_its_deployment_and_the_error() -> None:
    from prefect.server.utilities.user_templates import render_user_template_sync

    by_name = {a["name"]: a for a in automations.load()}
    [action] = by_name[FLOW_RUN_NOTIFIERS[0]]["actions"]
    # Both send the same notification (one YAML anchor).
    assert by_name[FLOW_RUN_NOTIFIERS[1]]["actions"] == [action]
    message = "Flow run encountered an exception: PermanentStepError: [sync] source 'x': no such source"
    event = state_event("Failed", message, name="amber-fox")
    run_id = event.resource.id.removeprefix("prefect.flow-run.")
    subject = render_user_template_sync(action["subject"], {"event": event})
    body = render_user_template_sync(action["body"], {"event": event})
    assert subject == "Splendor flow run failed: sync-source (amber-fox)"
    assert body.splitlines() == [
        "Flow run amber-fox of deployment sync-source/sync-source ended Failed (run count 1).",
        f"Prefect flow run: {run_id}",
        "Error: PermanentStepError: [sync] source 'x': no such source",
    ]
