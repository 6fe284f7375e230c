"""Recording an approved classification in the connectors file.

A source whose spec says `classification: review` (or `auto`) and names no search / semantic config
gets its config from the classification an admin approved in a run; Splendor holds the result. Until
the file says the same, the file does not describe the source: `plan` shows the classification as a
change ("record"), and `apply` writes it into the source's entry as explicit `search_config` /
`semantic_config`. From then on the file manages that config like any other (an explicit config
wins over a new proposal), and reviewing a change to it is a diff of the file.

The file is rewritten in place with its comments, order and quoting kept (ruamel.yaml round trip),
and only after the rewritten file has been read back as a valid connectors file. It keeps its mode
(others may read it: a teammate, a CI job), and a symlink to it stays a symlink: its target is rewritten.
"""

import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from splendor_api import models
from splendor_flows.engine.classification import is_classified
from splendor_flows.specs.connectors_file import ConnectorsFileError, parse_connectors
from splendor_flows.specs.source import SearchConfig, SemanticConfig, SourceSpec


def unrecorded_classification(spec: SourceSpec, source: models.Source) -> dict[str, Any]:
    """The search / semantic config to write into the spec's entry, or {} when there is none to
    record (the file manages the config already, or the source is not classified)."""
    if not spec.classifies or not is_classified(source):
        return {}
    # The file's models are strict: only what a spec can say is recorded (no image embeddings, which
    # a classification never sets).
    search = SearchConfig.model_validate(source.search_config.model_dump(exclude_none=True))
    semantic = SemanticConfig.model_validate(
        source.semantic_config.model_dump(exclude_none=True, exclude={"image_embeddings"})
    )
    return {"search_config": search.model_dump(), "semantic_config": semantic.model_dump()}


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments and key order survive
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def record_classifications(path: str, records: dict[str, dict[str, Any]]) -> None:
    """Write each source's recorded config into its entry of the connectors file at `path`."""
    if not records:
        return
    yaml = _yaml()
    file = Path(path)
    data = yaml.load(file.read_text())
    entries = {e.get("source_key"): e for e in data.get("sources") or [] if hasattr(e, "get")}
    missing = sorted(set(records) - set(entries))
    if missing:
        raise ConnectorsFileError(path, [f"sources: no entry with source_key {key!r}" for key in missing])
    for key, config in records.items():
        entries[key].update(config)
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    # Never leave a file that `plan` could not read: check the result before it replaces the original.
    parse_connectors(YAML(typ="safe").load(text), path)
    # Renaming over a symlink would replace the link with a plain file: rename over its target, from
    # a temporary file beside it (a rename is atomic only within one file system).
    target = file.resolve(strict=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; the rewritten file keeps the original's permissions.
        os.fchmod(handle, stat.S_IMODE(target.stat().st_mode))
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
