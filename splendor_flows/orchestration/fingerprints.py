"""What credentials we last submitted for each source, as salted hashes: the API never shows them back.

Provisioning is write-only, so a declarative tool cannot diff credentials against the API (the
reason other tools' plans never converge, or ignore secrets altogether). We keep, per source, a
salted SHA-256 of the canonical JSON we submitted, in a Prefect Variable: shared by everyone who
applies against the same Prefect server, never the value, and useless for recovering it when the
credential has real entropy (API keys, passwords). A changed Secret block hashes differently, so
`plan` shows a re-provision; an unchanged one converges to "no changes". The provision step reads
the same record, so editing a spec's credentials (or its Secret block) takes effect on the next run.
"""

import hashlib
import hmac
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from prefect import get_client
from prefect.variables import Variable
from pydantic import BaseModel

from splendor_flows.orchestration.prefect_compat import read_variables_tagged

TAG = "splendor-credential-fingerprint"


class Fingerprint(BaseModel):
    salt: str
    digest: str
    secret_block: str
    applied_at: str

    def matches(self, value: Any) -> bool:
        return secrets.compare_digest(self.digest, digest(self.salt, value))


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(salt: str, value: Any) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + canonical(value)).hexdigest()


def new_fingerprint(value: Any, secret_block: str) -> Fingerprint:
    salt = secrets.token_hex(16)
    return Fingerprint(
        salt=salt,
        digest=digest(salt, value),
        secret_block=secret_block,
        applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def variable_name(tenant: str, source_key: str) -> str:
    # Variable names allow letters, digits, '-' and '_': a hash keeps "a.b" and "a_b" apart.
    slug = re.sub(r"[^a-z0-9_-]", "_", f"{tenant}-{source_key}".lower())[:180]
    tail = hashlib.sha256(f"{tenant}\0{source_key}".encode()).hexdigest()[:10]
    return f"splendor_cred_{slug}_{tail}"


async def read_all(tenant: str, source_keys: list[str]) -> dict[str, Fingerprint]:
    """Fingerprints of these sources, read with a few paged filter calls rather than one per source."""
    wanted = {variable_name(tenant, key): key for key in source_keys}
    found: dict[str, Fingerprint] = {}
    for variable in await read_variables_tagged(TAG):
        key = wanted.get(variable.name)
        if key is not None and isinstance(variable.value, dict):
            found[key] = Fingerprint.model_validate(variable.value)
    return found


async def read_one(tenant: str, source_key: str) -> Fingerprint | None:
    async with get_client() as client:
        variable = await client.read_variable_by_name(variable_name(tenant, source_key))
    return (
        Fingerprint.model_validate(variable.value) if variable and isinstance(variable.value, dict) else None
    )


def matches(fingerprint: Fingerprint, value: Any) -> bool:
    return hmac.compare_digest(fingerprint.digest, digest(fingerprint.salt, value))


async def save(tenant: str, source_key: str, fingerprint: Fingerprint) -> None:
    await Variable.aset(
        variable_name(tenant, source_key), fingerprint.model_dump(), tags=[TAG], overwrite=True
    )
