"""What an admin does in the Prefect UI, in a real browser: a Custom run from the typed form, an OAuth
approval through the resume form, Retry of a failed run, and the pipeline summary.

Each scenario checks both what the page shows and what reached the emulator (its request counters and
state), so a UI that only looks right, or a flow that works only through the API, fails here.
"""

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import api, flow_runs

from .conftest import (
    CHROMIUM,
    DEPLOYMENT,
    SECRET_BLOCK,
    SKIP_REASON,
    UI_PREFIX,
    Ui,
    answered,
    create_run,
    read_run,
    run_menu,
    source,
    state_badge,
    wait_for_state,
)
from .screens import shot, shot_region

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)]

ARN = "arn:aws:iam::123456789012:role/acme-splendor"
CREATE = "POST /v1/admin/airbyte-sources"
PROVISION = "POST /v1/admin/airbyte-sources/{source_id}/provision"
CONNECT = "POST /v1/admin/airbyte-sources/{source_id}/connection"
SYNC = "POST /v1/admin/airbyte-sources/{source_id}/sync"
OAUTH_COMPLETE = "POST /v1/admin/airbyte-sources/{source_id}/oauth/complete"
# Runs started through the API poll tightly: the emulator's syncs take 2 s, not hours.
FAST_POLL = {"initial_seconds": 0.25, "cap_seconds": 1.0}
# The spec fields an admin fills in for an API-key provider; the first five are required.
FORM_FIELDS = ["provider_key", "source_key", "dataset_id", "bucket", "iam_role_arn", "credentials_secret"]
RUN_URL = re.compile(rf"{UI_PREFIX}/runs/flow-run/([0-9a-f-]{{36}})")


def spec(source_key: str, **overrides: Any) -> dict[str, Any]:
    values = {
        "provider_key": "stripe",
        "source_key": source_key,
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": ARN,
        "credentials_secret": SECRET_BLOCK,
    }
    return values | overrides


@pytest.fixture(scope="module")
def oauth_run(ui: Ui) -> str:
    """A connect-source run of an OAuth provider, left to reach its pause for approval."""
    oauth_spec = spec(
        "browser-oauth",
        provider_key="salesforce",
        dataset_id="crm",
        credentials_secret=None,
        oauth={"timeout_seconds": 300},
    )
    return create_run(ui, {"spec": oauth_spec, "poll": FAST_POLL})


@pytest.fixture(scope="module")
def failed_run(ui: Ui) -> str:
    """A connect-source run whose first Splendor sync fails, with no second attempt allowed."""
    # A run fault, not an HTTP one: it hits only this source, so runs of the other scenarios going on
    # at the same time are not affected.
    ui.stack.emulator.add_fault(kind="run_fail", source_key="browser-retry", count=1)
    return create_run(ui, {"spec": spec("browser-retry"), "max_sync_attempts": 1, "poll": FAST_POLL})


@pytest.fixture(scope="module")
def slow_runs(oauth_run: str, failed_run: str) -> None:
    """The runs of the OAuth and Retry scenarios, started as the second form scenario begins: they reach
    their pause and their failure while it waits for its own run, instead of one after the other."""


def field_of(page: Page, label: str) -> Locator:
    """The form field block around a label. The form's markup has no per-field role or test id: a field
    is the nearest <div> that holds both the label and the <fieldset> with the input."""
    return page.get_by_text(label, exact=True).locator("xpath=ancestor::div[fieldset][1]")


def fill_optional(page: Page, label: str, value: str) -> None:
    # An optional string is a choice between "str" and None in this form: pick str, then type.
    field = field_of(page, f"{label} (Optional)")
    field.get_by_role("tab", name="str", exact=True).click()
    field.get_by_role("textbox").fill(value)


def fill_spec(page: Page, source_key: str, iam_role_arn: str) -> None:
    # provider_key is optional in the model (a catalog connector names source_definition_id instead).
    fill_optional(page, "Provider Key", "stripe")
    for label, value in {
        "Source Key": source_key,
        "Dataset Id": "payments",
        "Bucket": "acme-connectors",
        "Iam Role Arn": iam_role_arn,
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    fill_optional(page, "Credentials Secret", SECRET_BLOCK)


def test_custom_run_form_shows_the_spec_and_refuses_a_bad_arn(page: Page, ui: Ui) -> None:
    emu = ui.stack.emulator
    schema = api(ui.stack, "GET", f"/deployments/{ui.deployment_id}")["parameter_openapi_schema"]
    source_spec = schema["definitions"]["SourceSpec"]

    # The way an admin gets there: the UI's home page, Deployments, connect-source, Run, Custom run.
    page.goto(f"{ui.origin}/")
    expect(page).to_have_url(re.compile(rf"{UI_PREFIX}/"))
    page.get_by_role("link", name="Deployments", exact=True).click()
    # The list links both the deployment and its flow under the same name: take the deployment's.
    page.get_by_role("link", name=DEPLOYMENT, exact=True).and_(
        page.locator('[href*="/deployments/deployment/"]')
    ).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()

    # Every field of the spec, titled and described as the flow's typed parameters say.
    for name in FORM_FIELDS:
        prop = source_spec["properties"][name]
        title = prop["title"] if name in source_spec["required"] else f"{prop['title']} (Optional)"
        assert prop.get("description"), f"spec.{name} has no description for the form to show"
        label = page.get_by_text(title, exact=True)
        expect(label).to_be_visible()
        expect(label.locator("xpath=following-sibling::p[1]")).to_have_text(prop["description"])

    # Eleven digits where the account id needs twelve.
    fill_spec(page, "browser-bad-arn", "arn:aws:iam::12345678901:role/acme-splendor")
    # This scenario runs first, before any flow run exists: every Splendor call would show here.
    calls_before = emu.counts()
    runs_before = len(flow_runs(ui.stack, DEPLOYMENT))
    submit = page.get_by_role("button", name="Submit")
    assert answered(page, "/create_flow_run", submit.click).status == 409
    # The server enforces the parameter schema: the toast names the field, the field shows the rule.
    expect(page.get_by_text(re.compile(r"Validation failed for field 'spec\.iam_role_arn'"))).to_be_visible()
    expect(field_of(page, "Iam Role Arn").get_by_text(re.compile("does not match"))).to_be_visible()
    expect(page).to_have_url(re.compile(r"/run\b"))
    shot_region(
        page,
        page.get_by_role("heading", name="Parameters", exact=True),
        field_of(page, "Iam Role Arn"),
        "custom-run-form",
        docs=True,
    )
    assert len(flow_runs(ui.stack, DEPLOYMENT)) == runs_before, "a run was created from a bad spec"
    assert emu.counts() == calls_before, "a refused form still called Splendor"
    assert not [s for s in emu.sources("acme") if s["source_key"] == "browser-bad-arn"]


@pytest.mark.usefixtures("slow_runs")
def test_custom_run_form_starts_a_run_that_completes(page: Page, ui: Ui) -> None:
    emu = ui.stack.emulator
    page.goto(ui.url(f"/deployments/deployment/{ui.deployment_id}/run"))
    fill_spec(page, "browser-form", ARN)
    submit = page.get_by_role("button", name="Submit")
    assert answered(page, "/create_flow_run", submit.click).ok
    # The deployment's page opens with the new run in its list (or as its next run while scheduled).
    expect(page).to_have_url(re.compile(rf"/deployments/deployment/{ui.deployment_id}(\?|$)"))
    [new] = [
        r for r in flow_runs(ui.stack, DEPLOYMENT) if r["parameters"]["spec"]["source_key"] == "browser-form"
    ]
    page.get_by_role("link", name=new["name"], exact=True).first.click()
    expect(page).to_have_url(RUN_URL)
    run_id = new["id"]
    assert run_id in page.url
    wait_for_state(page, "Completed", ui, run_id)
    shot(page, "custom-run-completed")

    run = read_run(ui, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["spec"].items() >= spec("browser-form").items()
    assert not run["parameters"].get("secret_id")
    created = source(ui, "browser-form")
    assert created["airbyte"]["credential_status"] == "ready"
    assert [r["status"] for r in emu.runs("acme", created["source_id"])] == ["succeeded"]


def test_oauth_run_suspends_and_the_resume_form_takes_the_secret_id(
    page: Page, ui: Ui, oauth_run: str
) -> None:
    emu = ui.stack.emulator
    run_id = oauth_run
    page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    # A deployment run suspends while it waits for a person: its worker (here, serve) is released.
    wait_for_state(page, "Suspended", ui, run_id, timeout_s=60)
    assert source(ui, "browser-oauth")["airbyte"]["credential_status"] == "pending_oauth"
    completes_before = emu.count(OAUTH_COMPLETE)

    # The consent link is an artifact of the suspended run.
    page.get_by_role("tab", name="Artifacts").click()
    card = page.get_by_text("splendor-oauth-consent", exact=True)
    expect(card).to_be_visible()
    shot(page, "oauth-paused-artifacts")
    card.click()
    link = page.get_by_role("link", name="Approve browser-oauth access")
    expect(link).to_have_attribute(
        "href", re.compile(rf"^{re.escape(emu.base_url)}/_emulator/oauth/consent/")
    )
    link.click()

    # The emulator's consent page stands in for the provider's: approve, then read the secret_id.
    page.get_by_role("link", name="Approve", exact=True).click()
    secret = page.locator("#secret_id")
    expect(secret).to_have_text(re.compile(r"^sec_"))
    secret_id = secret.inner_text()
    assert source(ui, "browser-oauth")["airbyte"]["credential_status"] == "pending_oauth"
    assert emu.count(OAUTH_COMPLETE) == completes_before

    page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    wait_for_state(page, "Suspended", ui, run_id)
    run_menu(page, "Resume")
    dialog = page.get_by_role("dialog")
    # The form comes from the flow's RunInput: its field and description, not a generic JSON box.
    secret_field = dialog.get_by_label("Secret Id", exact=True)
    expect(secret_field).to_be_visible()
    expect(dialog.get_by_text("secret_id from the consent redirect", exact=True)).to_be_visible()
    shot(dialog, "oauth-resume-form", docs=True)
    secret_field.fill(secret_id)
    resume = dialog.get_by_role("button", name="Resume", exact=True)
    assert answered(page, f"/flow_runs/{run_id}/resume", resume.click).ok
    wait_for_state(page, "Completed", ui, run_id)
    shot(page, "oauth-completed")

    run = read_run(ui, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert source(ui, "browser-oauth")["airbyte"]["credential_status"] == "ready"
    assert emu.count(OAUTH_COMPLETE) - completes_before == 1
    # The secret_id went through the resume form only: not into parameters, and not left behind as the
    # run's input on the Prefect server.
    assert secret_id not in json.dumps(run["parameters"])
    inputs = api(ui.stack, "POST", f"/flow_runs/{run_id}/input/filter", json={"prefix": "", "limit": 100})
    assert secret_id not in json.dumps(inputs), "the secret_id is still stored as plain run input"


def test_retry_of_a_failed_run_resumes_at_the_failed_step(page: Page, ui: Ui, failed_run: str) -> None:
    emu = ui.stack.emulator
    run_id = failed_run
    page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    wait_for_state(page, "Failed", ui, run_id, timeout_s=60)
    assert "[sync]" in (read_run(ui, run_id)["state"]["message"] or "")
    before = {route: emu.count(route) for route in (CREATE, PROVISION, CONNECT, SYNC)}

    dialog = page.get_by_role("alertdialog")  # a confirmation, unlike the resume form's dialog

    def retry() -> None:
        if not dialog.is_visible():
            run_menu(page, "Retry")
        expect(dialog.get_by_text("AwaitingRetry", exact=True)).to_be_visible()
        shot(dialog, "retry-dialog")
        dialog.get_by_role("button", name="Retry", exact=True).click()

    assert answered(page, f"/flow_runs/{run_id}/set_state", retry).ok
    # Leaves Failed first (AwaitingRetry, Running), so the wait below cannot stop at the old state.
    expect(state_badge(page, "Failed")).to_be_hidden()
    wait_for_state(page, "Completed", ui, run_id)
    shot(page, "retry-completed")

    run = read_run(ui, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["run_count"] == 2, "Retry must run the same flow run again, not a new one"
    # Resumed at the step that failed: one new sync, and nothing before it called again.
    after = {route: emu.count(route) for route in before}
    assert after[CREATE] == before[CREATE], "the retry created the source a second time"
    assert after[PROVISION] == before[PROVISION] and after[CONNECT] == before[CONNECT]
    assert after[SYNC] == before[SYNC] + 1
    [retried] = [s for s in emu.sources("acme") if s["source_key"] == "browser-retry"]
    assert [r["status"] for r in emu.runs("acme", retried["source_id"])] == ["failed", "succeeded"]


def test_pipeline_summary_artifact_renders_its_table(page: Page, ui: Ui) -> None:
    emu = ui.stack.emulator
    done = [r for r in flow_runs(ui.stack, DEPLOYMENT) if r["state"]["type"] == "COMPLETED"]
    if done:  # any completed pipeline will do: the other scenarios leave some behind
        run_id, source_key = done[0]["id"], done[0]["parameters"]["spec"]["source_key"]
        page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    else:  # run on its own
        source_key = "browser-summary"
        run_id = create_run(ui, {"spec": spec(source_key), "poll": FAST_POLL})
        page.goto(ui.url(f"/runs/flow-run/{run_id}"))
        wait_for_state(page, "Completed", ui, run_id)
    created = source(ui, source_key)
    sync_run = [r for r in emu.runs("acme", created["source_id"]) if r["status"] == "succeeded"][-1]
    ingests = [i for i in emu.ingest_runs("acme") if i["connector_run_id"] == sync_run["run_id"]]
    assert ingests and {i["status"] for i in ingests} == {"ready"}

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(re.compile(r"^splendor-.*-summary$")).click()
    expect(
        page.get_by_role("heading", name=re.compile(f"Splendor pipeline: {re.escape(source_key)}"))
    ).to_be_visible()

    def row(label: str) -> Locator:
        # The first table with a row of that label: the summary's own table comes before "Steps".
        return page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True)).first

    # The markdown table, rendered: the source, the Splendor run, its records and the ingest status.
    expect(row("source id")).to_contain_text(str(created["source_id"]))
    expect(row("run")).to_contain_text(f"{sync_run['run_id']} → succeeded")
    expect(row("records / bytes")).to_contain_text(
        f"{sync_run['records_synced']} / {sync_run['bytes_synced']}"
    )
    ingest_row = row("ingest")
    expect(ingest_row).to_contain_text("ready (")
    for ingest in ingests:
        expect(ingest_row).to_contain_text(ingest["ingest_run_id"])
    shot_region(
        page,
        page.get_by_role("heading", name=re.compile("Splendor pipeline")),
        ingest_row,
        "pipeline-summary",
        docs=True,
    )
