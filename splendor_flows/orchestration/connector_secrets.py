"""Connector credentials: loaded from a Prefect Secret block, checked locally, never logged.

Flow parameters are stored in plain text in the Prefect database, so credentials never travel as
parameters; the spec only names the Secret block. Validation messages name the failing field and
the rule, never the submitted value (jsonschema's own messages quote it).
"""

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from prefect.blocks.system import Secret

from splendor_flows.engine.errors import SpecError
from splendor_flows.orchestration.secret_masking import remember_secrets


async def load_connector_credentials(source_key: str, block_name: str | None) -> dict[str, Any]:
    if not block_name:
        raise SpecError(
            source_key, "credentials_secret: required for an api_key provider (name of a Secret block)"
        )
    try:
        # aload is typed as Prefect's generic Block; a Secret block is what it loads here.
        block: Secret[Any] = await Secret.aload(block_name)
    except ValueError as exc:
        raise SpecError(
            source_key,
            f"credentials_secret: no Secret block named '{block_name}' "
            f"(create it with Secret(value={{...}}).save('{block_name}'))",
        ) from exc
    value = block.get()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        raise SpecError(
            source_key, f"credentials_secret: Secret block '{block_name}' must hold a JSON object"
        )
    remember_secrets(value.values())
    return value


def credential_problems(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Mismatches between a credential object and the connector's JSON-Schema spec, value-free."""
    if not schema:
        return []
    validator_cls = jsonschema.validators.validator_for(schema)
    problems: list[str] = []
    for error in sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(object)"
        if error.validator == "required":
            missing = [r for r in error.validator_value if r not in (error.instance or {})]
            problems.extend(f"{'.'.join([*map(str, error.path), m])}: is required" for m in missing)
        elif error.validator == "additionalProperties":
            problems.append(f"{where}: has fields the connector does not accept")
        else:
            problems.append(f"{where}: fails '{error.validator}' = {error.validator_value!r}")
    return problems


def check_credentials(source_key: str, config: dict[str, Any], schema: dict[str, Any]) -> None:
    problems = credential_problems(config, schema)
    if problems:
        raise SpecError(source_key, "credentials do not match the connector's spec: " + "; ".join(problems))
