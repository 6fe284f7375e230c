"""deployments/automations.yaml is what `prefect automation create --from-file` accepts."""

from datetime import timedelta

from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from stack import automations


def test_every_automation_validates_as_prefect_reads_it() -> None:
    parsed = [AutomationCore.model_validate(a) for a in automations.load()]
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
