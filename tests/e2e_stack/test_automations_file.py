"""deployments/automations.yaml is what `prefect automation create --from-file` accepts."""

import uuid
from datetime import timedelta

import pytest
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from stack import automations


def test_every_automation_validates_as_prefect_reads_it() -> None:
    loaded = automations.load()
    # Block names resolve to ids on a server; any ids do for validating the rest.
    ids = {ref: str(uuid.uuid4()) for ref in automations.blocks_named(loaded)}
    parsed = [AutomationCore.model_validate(automations.with_block_ids(a, ids)) for a in loaded]
    by_name = {a.name: a for a in parsed}

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
