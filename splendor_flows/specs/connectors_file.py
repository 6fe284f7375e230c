"""The connectors file: sources declared as code (YAML), validated before anything touches the API.

Shape:

    version: 1
    defaults:            # any SourceSpec field; each source may override it
      bucket: acme-connectors
      iam_role_arn: arn:aws:iam::123456789012:role/acme-splendor
    sources:
      - provider_key: stripe
        source_key: stripe-payments
        dataset_id: payments
        credentials_secret: stripe-credentials

Each entry, merged over `defaults`, must be a valid `SourceSpec` (the same model the connect-source
form uses). Errors name the entry the way a user finds it: `sources[3].iam_role_arn: ...`.
It lives with the spec models because the fleet flow reads it and flows import nothing above them..
"""

import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from splendor_flows.specs.source import SourceSpec

FIELDS = frozenset(SourceSpec.model_fields)
# Identity of a source: meaningless as a shared default.
NOT_DEFAULTS = frozenset({"source_key"})


class ConnectorsFileError(ValueError):
    """The file cannot be used; `problems` holds one located message per mistake."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        listing = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s)\n{listing}")


class ConnectorsFile(BaseModel):
    path: str
    defaults: dict[str, Any]
    sources: list[SourceSpec]

    def select(self, only: list[str] | None) -> list[SourceSpec]:
        """Sources whose key matches any pattern of `only` (all when empty); unmatched patterns fail."""
        if not only:
            return list(self.sources)
        unmatched = [p for p in only if not any(fnmatch.fnmatchcase(s.source_key, p) for s in self.sources)]
        if unmatched:
            raise ConnectorsFileError(
                self.path, [f"only: {p!r} matches no source_key in the file" for p in unmatched]
            )
        return [s for s in self.sources if any(fnmatch.fnmatchcase(s.source_key, p) for p in only)]


def _located(prefix: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        parts = [str(p) for p in err["loc"]]
        loc = prefix + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)
        problems.append(f"{loc}: {err['msg']}")
    return problems


def parse_connectors(data: Any, path: str = "<connectors>") -> ConnectorsFile:
    if not isinstance(data, dict):
        raise ConnectorsFileError(
            path, ["(file): expected a mapping with 'sources' (and optional 'defaults')"]
        )
    problems: list[str] = []
    unknown_top = sorted(set(data) - {"version", "defaults", "sources"})
    problems += [f"{key}: unknown top-level key (expected version, defaults, sources)" for key in unknown_top]
    if data.get("version", 1) != 1:
        problems.append(f"version: unsupported version {data.get('version')!r} (this tool reads version 1)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: expected a mapping of source fields")
        defaults = {}
    for key in sorted(defaults):
        if key in NOT_DEFAULTS:
            problems.append(f"defaults.{key}: must be set per source")
        elif key not in FIELDS:
            problems.append(f"defaults.{key}: not a source field")
    entries = data.get("sources")
    if not isinstance(entries, list) or not entries:
        problems.append("sources: expected a non-empty list of sources")
        entries = []
    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    usable_defaults = {k: v for k, v in defaults.items() if k in FIELDS and k not in NOT_DEFAULTS}
    for index, entry in enumerate(entries):
        where = f"sources[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping of source fields")
            continue
        try:
            spec = SourceSpec.model_validate({**usable_defaults, **entry})
        except ValidationError as exc:
            key = entry.get("source_key")
            label = f"{where}" + (f" ({key})" if isinstance(key, str) else "")
            problems += _located(label, exc)
            continue
        if spec.source_key in seen:
            problems.append(
                f"{where}.source_key: {spec.source_key!r} is already used by sources[{seen[spec.source_key]}]"
            )
            continue
        seen[spec.source_key] = index
        specs.append(spec)
    if problems:
        raise ConnectorsFileError(path, problems)
    return ConnectorsFile(path=path, defaults=usable_defaults, sources=specs)


def load_connectors(path: str | Path) -> ConnectorsFile:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConnectorsFileError(str(path), [f"(file): cannot read it ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConnectorsFileError(
            str(path), [f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    return parse_connectors(data, str(path))
