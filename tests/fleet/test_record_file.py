"""Writing a classification into a connectors file: only what a spec can say, and never a broken file."""

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from splendor_api import models
from splendor_flows.connectors.record import record_classifications, unrecorded_classification
from splendor_flows.specs.connectors_file import ConnectorsFileError, load_connectors
from splendor_flows.specs.source import SourceSpec

FILE = """\
version: 1
defaults:
  bucket: acme-connectors   # shared
  iam_role_arn: arn:aws:iam::123456789012:role/acme-splendor
sources:
  - provider_key: stripe
    source_key: payments
    dataset_id: payments
    classification: review
"""
CONFIG: dict[str, Any] = {
    "search_config": {"text_fields": [{"field": "description", "boost": 1.0, "natural_language": True}]},
    "semantic_config": {
        "document_embeddings": {"fields": [{"field": "description", "max_chars": 4000}]},
        "vocabulary": {"fields": [{"field": "status"}]},
    },
}


def _source(**config: Any) -> models.Source:
    return models.Source.model_validate(
        {"source_id": 7, "source_key": "payments", "source_type": "airbyte", "name": "n", "dataset_id": "d"}
        | {"tenant_id": "acme"}
        | config
    )


def _spec(**values: Any) -> SourceSpec:
    base = {
        "provider_key": "stripe",
        "source_key": "payments",
        "dataset_id": "payments",
        "bucket": "acme-connectors",
        "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor",
    }
    return SourceSpec(**base | values)


def test_only_a_classified_source_of_a_classifying_spec_has_something_to_record() -> None:
    # Image embeddings are not a spec field (and no classification sets them): left out of the record.
    semantic = CONFIG["semantic_config"] | {"image_embeddings": {"fields": ["photo_url"]}}
    classified = _source(search_config=CONFIG["search_config"], semantic_config=semantic)
    assert unrecorded_classification(_spec(classification="review"), classified) == CONFIG
    assert unrecorded_classification(_spec(classification="auto"), classified) == CONFIG
    assert unrecorded_classification(_spec(), classified) == {}  # off: the file manages it already
    explicit = _spec(classification="review", search_config={"text_fields": [{"field": "body"}]})
    assert unrecorded_classification(explicit, classified) == {}
    assert unrecorded_classification(_spec(classification="review"), _source()) == {}


def test_recording_keeps_the_file_and_adds_the_config(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(FILE)
    record_classifications(str(path), {"payments": CONFIG})
    text = path.read_text()
    assert text.startswith(FILE.rstrip("\n").rsplit("\n", 1)[0])  # everything before is kept as it was
    assert "# shared" in text
    [spec] = load_connectors(path).sources
    assert spec.search_config.model_dump() == CONFIG["search_config"]
    assert spec.semantic_config.model_dump() == CONFIG["semantic_config"]


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        ({"nope": CONFIG}, "no entry with source_key 'nope'"),
        ({"payments": {"search_config": {"text_fields": [{"field": "d", "boost": 0}]}}}, "boost"),
    ],
    ids=["unknown source", "invalid config"],
)
def test_a_record_that_would_break_the_file_leaves_it_untouched(
    tmp_path: Path, records: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(FILE)
    with pytest.raises(ConnectorsFileError, match=problem):
        record_classifications(str(path), records)
    assert path.read_text() == FILE
    assert [p.name for p in tmp_path.iterdir()] == ["connectors.yaml"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o664], ids=oct)
def test_recording_keeps_the_files_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(FILE)
    path.chmod(mode)
    record_classifications(str(path), {"payments": CONFIG})
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert "search_config" in path.read_text()


def test_recording_through_a_symlink_rewrites_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    # A checkout that links the file from elsewhere (a shared config repository, say).
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "connectors.yaml"
    target.write_text(FILE)
    target.chmod(0o644)
    work = tmp_path / "work"
    work.mkdir()
    link = work / "connectors.yaml"
    link.symlink_to(Path("..") / "shared" / "connectors.yaml")

    record_classifications(str(link), {"payments": CONFIG})

    assert link.is_symlink() and os.readlink(link) == str(Path("..") / "shared" / "connectors.yaml")
    [spec] = load_connectors(target).sources
    assert spec.search_config.model_dump() == CONFIG["search_config"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    # The rewrite went through a temporary file beside the target, renamed over it: nothing is left.
    assert [p.name for p in shared.iterdir()] == ["connectors.yaml"]
    assert [p.name for p in work.iterdir()] == ["connectors.yaml"]
