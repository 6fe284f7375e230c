"""Connector credentials: loaded from a Prefect Secret block, checked locally, never logged.

Flow parameters are stored in plain text in the Prefect database, so credentials never travel as
parameters; the spec only names the Secret block. Validation messages name the failing field and
the rule, never the submitted value (jsonschema's own messages quote it).
"""

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from prefect.blocks.system import Secret

from splendor_flows.engine.errors import SpecError
from splendor_flows.orchestration import fingerprints
from splendor_flows.orchestration.secret_masking import remember_secrets

# Secret blocks read at once when a run learns the credentials of many sources to mask them.
_BLOCK_READS_IN_FLIGHT = 8


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
    value = _credential_object(block.get())
    if value is None:
        raise SpecError(
            source_key, f"credentials_secret: Secret block '{block_name}' must hold a JSON object"
        )
    remember_secrets(value.values())
    return value


def _credential_object(value: Any) -> dict[str, Any] | None:
    """A Secret block's value as the credential object it holds (a dict, or JSON text of one), or None."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


async def remember_credentials(block_names: Iterable[str | None]) -> None:
    """Mask the values of these Secret blocks (each read once) in everything this context sends out.

    A fleet or a schedule tick syncs sources it did not connect, so it never loads their credentials (a
    sync needs none), yet a Splendor run's error may quote one: an upstream refusing a key it was given.
    A block that is gone or holds no credential object is passed over: there is nothing of it to mask.
    """
    gate = asyncio.Semaphore(_BLOCK_READS_IN_FLIGHT)

    async def read(name: str) -> dict[str, Any] | None:
        async with gate:
            try:
                block: Secret[Any] = await Secret.aload(name)
            except ValueError:  # no such block
                return None
        return _credential_object(block.get())

    found = await asyncio.gather(*(read(name) for name in sorted({n for n in block_names if n})))
    remember_secrets(value.values() for value in found if value is not None)


async def remember_credentials_of(tenant: str, source_keys: list[str]) -> None:
    """`remember_credentials` for the Secret blocks these sources were last provisioned from (their
    fingerprints name them), read with a few filter calls whatever the number of sources."""
    recorded = await fingerprints.read_all(tenant, source_keys)
    await remember_credentials(f.secret_block for f in recorded.values())


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
