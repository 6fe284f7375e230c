"""What an admin does in the Prefect UI to approve a field classification, in a real browser."""

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import api

from .conftest import (
    CHROMIUM,
    SKIP_REASON,
    Ui,
    answered,
    create_run,
    read_run,
    run_menu,
    source,
    wait_for_state,
)
from .screens import shot
from .test_browser_ui import FAST_POLL, spec

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)]

UPDATE = "PUT /v1/admin/sources/{source_id}"
KEY = "browser-classify"


def test_classification_is_reviewed_in_the_resume_form_and_applied(page: Page, ui: Ui) -> None:
    emu = ui.stack.emulator
    run_id = create_run(
        ui, {"spec": spec(KEY, streams=["charges"], classification="review"), "poll": FAST_POLL}
    )
    page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    wait_for_state(page, "Suspended", ui, run_id, timeout_s=60)
    updates_before = emu.count(UPDATE)

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(f"splendor-{KEY}-classification", exact=True).click()
    # The proposal as a table: one row per field with its stream, type, proposed role and reason.
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="description", exact=True))
    expect(row).to_contain_text("charges")
    expect(row).to_contain_text("text")
    expect(row).to_contain_text("a free-text name")
    shot(page, "classification-artifact", docs=True)
    page.goto(ui.url(f"/runs/flow-run/{run_id}"))
    wait_for_state(page, "Suspended", ui, run_id)
    run_menu(page, "Resume")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Vocabulary Fields (Optional)", exact=True)).to_be_visible()
    shot(dialog, "classification-resume-form", docs=True)
    # Nothing is applied while the admin reads.
    assert emu.count(UPDATE) == updates_before

    # The edit: customer becomes document text, currency a filter (its chip removed).
    dialog.get_by_role("button", name="Remove currency tag").click()
    dialog.get_by_role("button", name="Select Text Fields").click()
    page.get_by_role("option", name="customer", exact=True).click()
    page.keyboard.press("Escape")  # closes the list of fields, not the dialog
    expect(dialog.get_by_role("button", name="Remove customer tag")).to_be_visible()
    expect(dialog.get_by_role("button", name="Remove currency tag")).to_be_hidden()
    resume = dialog.get_by_role("button", name="Resume", exact=True)
    assert answered(page, f"/flow_runs/{run_id}/resume", resume.click).ok
    wait_for_state(page, "Completed", ui, run_id)

    run = read_run(ui, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert emu.count(UPDATE) - updates_before == 1
    applied = source(ui, KEY)
    assert [f["field"] for f in applied["search_config"]["text_fields"]] == ["customer", "description"]
    vocabulary = applied["semantic_config"]["vocabulary"]["fields"]
    assert [f["field"] for f in vocabulary] == ["status"]
    assert applied["airbyte"]["airbyte_connection_id"], "the run connected after the approval"
    # The suspended run started again from the top when answered: it did not publish a second proposal.
    artifact_filter = {"artifacts": {"key": {"any_": [f"splendor-{KEY}-classification"]}}}
    assert len(api(ui.stack, "POST", "/artifacts/filter", json=artifact_filter)) == 1
