"""Connectors as code records an approved classification: `plan` shows it, `apply` writes it into the file."""

from pathlib import Path

from prefect.blocks.system import Secret

from splendor_emulator import Emulator
from splendor_flows.connectors.plan_apply import apply, plan
from splendor_flows.specs.connectors_file import load_connectors

UPDATE = "PUT /v1/admin/sources/{source_id}"
CREDENTIALS = {"api_key": "sk_test_canary-record-5e1a", "account_id": "acct_rec1", "start_date": "2026-01-01"}

FILE = """\
# Connectors of the team (this comment must survive the rewrite).
version: 1
defaults:
  bucket: acme-connectors
  iam_role_arn: arn:aws:iam::123456789012:role/acme-splendor
sources:
  - provider_key: stripe
    source_key: {key}
    dataset_id: payments
    streams: [charges, customers]   # the two streams the dashboards use
    credentials_secret: {secret}
    classification: auto
"""


async def test_plan_shows_an_approved_classification_and_apply_records_it(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    path = tmp_path / "connectors.yaml"
    path.write_text(FILE.format(key=source_key, secret=secret))

    # Onboarding classifies the source (auto: the proposal is applied without a review).
    assert (await apply(str(path))).ok
    [source] = [s for s in emulator.sources("acme") if s["source_key"] == source_key]
    text = [f["field"] for f in source["search_config"]["text_fields"]]
    assert text == ["description", "name"]

    # The file does not say what Splendor has: a change to record, never one that clears the config.
    [change] = [c for c in (await plan(str(path))).changes if c.source_key == source_key]
    assert change.action == "update" and not change.updates, change.describe()
    assert change.record["search_config"]["text_fields"][0]["field"] == "description"
    assert "recorded in the file" in change.describe()
    assert "sk_test" not in change.model_dump_json()

    emulator.reset_counters()
    result = await apply(str(path))
    assert result.ok and result.applied == [source_key], result.failed
    assert emulator.counts().get(UPDATE, 0) == 0  # recorded in the file, nothing sent to Splendor

    written = path.read_text()
    assert "this comment must survive" in written and "# the two streams the dashboards use" in written
    [spec] = load_connectors(path).sources
    assert [f.field for f in spec.search_config.text_fields] == ["description", "name"]
    assert [f.field for f in spec.semantic_config.vocabulary.fields] == ["currency", "status"]
    assert not spec.classifies  # explicit now: the file manages the config from here on
    [after] = [c for c in (await plan(str(path))).changes if c.source_key == source_key]
    assert after.action == "unchanged", after.describe()
