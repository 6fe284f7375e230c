"""`prefect deploy --all` registers every deployment of prefect.yaml, its schedules and limits, and leaves
the upload trigger (an automation of deployments/automations.yaml) as it is."""

import pytest

from .conftest import PREFECT, UPLOAD_TRIGGER, Stack, api, deployment_id

pytestmark = pytest.mark.e2e

NAMES = {
    "connect-source",
    "sync-source",
    "sync-scheduled",
    "repair-ingest",
    "after-upload",
    "sync-fleet",
    "sync-fleet-shard",
    "tenant-status",
}


def _state(stack: Stack) -> tuple[dict[str, int], list[dict]]:
    deployments = api(stack, "POST", "/deployments/filter", json={})
    counts: dict[str, int] = {}
    for d in deployments:
        counts[d["name"]] = counts.get(d["name"], 0) + 1
    automations = api(stack, "POST", "/automations/filter", json={})
    return counts, automations


def test_deploy_all_registers_once_and_redeploy_does_not_duplicate(deployed: Stack) -> None:
    first_counts, first_automations = _state(deployed)
    assert first_counts == dict.fromkeys(NAMES, 1)
    assert [a["name"] for a in first_automations] == [UPLOAD_TRIGGER]
    scheduled_id = deployment_id(deployed, "sync-scheduled")
    # The schedule groups come from `splendor-flows apply` (tests/fleet/test_plan_apply_schedules.py),
    # not from prefect.yaml: a fresh deploy makes none, and a redeploy keeps the ones apply made.
    assert api(deployed, "GET", f"/deployments/{scheduled_id}")["schedules"] == []
    [managed] = api(
        deployed,
        "POST",
        f"/deployments/{scheduled_id}/schedules",
        json=[
            {
                "schedule": {"cron": "0 0 1 1 *", "timezone": "Europe/Paris"},
                "active": False,
                "parameters": {"source_keys": ["e2e-kept"], "trigger": "scheduled"},
                "slug": "sources-e2e-kept",
            }
        ],
    )

    deployed.run(PREFECT, "--no-prompt", "deploy", "--all", timeout=120)
    counts, automations = _state(deployed)
    assert counts == first_counts
    # The same automation, untouched: a trigger of prefect.yaml would have been deleted and re-created.
    assert [(a["id"], a["updated"]) for a in automations] == [
        (a["id"], a["updated"]) for a in first_automations
    ]

    scheduled = api(deployed, "GET", f"/deployments/{scheduled_id}")
    assert [(s["id"], s["slug"]) for s in scheduled["schedules"]] == [(managed["id"], "sources-e2e-kept")]
    api(deployed, "DELETE", f"/deployments/{scheduled_id}/schedules/{managed['id']}")
    # Neither sync deployment has a deployment-wide limit: it would serialise every source of the tenant
    # (one pipeline per source comes from the source's own slot).
    sync = api(deployed, "GET", f"/deployments/{deployment_id(deployed, 'sync-source')}")
    assert sync["global_concurrency_limit"] is None and scheduled["global_concurrency_limit"] is None
    assert sync["work_pool_name"] == "splendor-local"
    assert sync["enforce_parameter_schema"] is True

    trigger = automations[0]["trigger"]
    assert trigger["expect"] == ["splendor.upload.completed"]
    assert trigger["match"] == {"prefect.resource.id": "splendor.source.*"}
    action = automations[0]["actions"][0]
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == deployment_id(deployed, "after-upload")
    assert action["parameters"]["event_id"] == "{{ event.id | string }}"

    connect = api(deployed, "GET", f"/deployments/{deployment_id(deployed, 'connect-source')}")
    spec_schema = connect["parameter_openapi_schema"]
    assert "spec" in spec_schema["required"]
    assert spec_schema["properties"]["sync_id"]["description"].startswith("leave empty")
