"""plan / apply: create, converge to "no changes", detect a credential change without reading it back."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from bench.seed import bench_spec, connectors_yaml, onboard
from splendor_api import SplendorClient, SplendorConfig
from splendor_emulator import Emulator
from splendor_flows.connectors import plan_apply
from splendor_flows.connectors.plan_apply import apply, plan
from splendor_flows.orchestration.scope import Scope
from splendor_flows.orchestration.source_lock import ensure_source_limits, limit_name
from tests.flows.test_source_lock import _existing_limits

PROVISION = "POST /v1/admin/airbyte-sources/{source_id}/provision"
UPDATE = "PUT /v1/admin/sources/{source_id}"
CREATE = "POST /v1/admin/airbyte-sources"

CREDENTIALS = {"api_key": "sk_test_canary-plan-7c2d", "account_id": "acct_plan1", "start_date": "2026-01-01"}


def _write(path: Path, keys: list[str], secret: str, **extra: Any) -> None:
    sources = [
        {
            "provider_key": "stripe",
            "source_key": key,
            "dataset_id": "payments",
            "streams": ["charges"],
            "credentials_secret": secret,
            **extra,
        }
        for key in keys
    ]
    defaults = {"bucket": "acme-connectors", "iam_role_arn": "arn:aws:iam::123456789012:role/acme-splendor"}
    path.write_text(yaml.safe_dump({"version": 1, "defaults": defaults, "sources": sources}))


async def test_plan_apply_converges_and_sees_credential_changes(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    keys = [f"{source_key}-a", f"{source_key}-b"]
    path = tmp_path / "connectors.yaml"
    _write(path, keys, secret)

    # A source of the tenant that the file does not list: reported, never touched.
    async with SplendorClient(SplendorConfig.from_env()) as client:
        await onboard(client, [bench_spec(0, source_key=f"{source_key}-other")])

    first = await plan(str(path))
    other = next(c for c in first.changes if c.source_key == f"{source_key}-other")
    assert other.action == "not-in-file"
    mine = {c.source_key: c for c in first.changes if c.source_key in keys}
    assert {c.action for c in mine.values()} == {"create"}
    assert first.has_changes

    result = await apply(str(path))
    assert result.ok and sorted(result.applied) == sorted(keys), result.failed

    after = await plan(str(path))
    mine = {c.source_key: c for c in after.changes if c.source_key in keys}
    assert {c.action for c in mine.values()} == {"unchanged"}, [c.describe() for c in mine.values()]
    assert not after.has_changes

    # A rotated credential: same block name, new content. Only the fingerprint can tell.
    await Secret(value={**CREDENTIALS, "api_key": "sk_test_rotated-91ab"}).save(secret, overwrite=True)
    rotated = await plan(str(path))
    changes = [c for c in rotated.changes if c.source_key in keys]
    assert all(c.action == "update" and "changed since" in (c.reprovision or "") for c in changes)
    assert "sk_test" not in rotated.model_dump_json()
    emulator.reset_counters()
    assert (await apply(str(path))).ok
    assert emulator.counts().get(PROVISION, 0) == 2
    assert not (await plan(str(path))).has_changes


async def test_config_changes_use_put_and_immutable_ones_are_blocked(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    key = f"{source_key}-x"
    path = tmp_path / "connectors.yaml"
    _write(path, [key], secret)
    assert (await apply(str(path))).ok

    search = {"text_fields": [{"field": "description", "boost": 2.0, "natural_language": True}]}
    _write(path, [key], secret, retention_days=90, search_config=search)
    changed = next(c for c in (await plan(str(path))).changes if c.source_key == key)
    assert changed.action == "update" and set(changed.updates) == {"retention_days", "search_config"}
    assert "retention_days: null → 90" in changed.describe()
    emulator.reset_counters()
    assert (await apply(str(path))).ok
    assert emulator.counts().get(UPDATE, 0) == 1 and emulator.counts().get(PROVISION, 0) == 0
    assert not (await plan(str(path))).has_changes

    _write(path, [key], secret, retention_days=90, search_config=search, dataset_id="elsewhere")
    blocked = next(c for c in (await plan(str(path))).changes if c.source_key == key)
    assert blocked.action == "blocked" and blocked.blocked == ["dataset_id"]
    emulator.reset_counters()
    result = await apply(str(path))
    assert not result.ok and emulator.counts().get(UPDATE, 0) == 0 and emulator.counts().get(CREATE, 0) == 0


async def _has_slot(config: SplendorConfig, key: str) -> bool:
    """Whether the source has its Prefect limit (source_lock)."""
    scope = Scope(api_base=config.api_base, tenant=config.tenant, source_key=key, sync_id="")
    return bool(await _existing_limits([limit_name(scope)]))


async def test_apply_leaves_each_source_of_the_file_with_its_slot_even_one_it_has_nothing_to_change(
    emulator: Emulator, tmp_path: Path, source_key: str
) -> None:
    """Sources onboarded elsewhere and listed as they are: apply changes nothing in Splendor, but makes
    their slots (source_lock), so the tenant's first fleet or tick does not; a source of the tenant the
    file does not list gets none."""
    specs = [bench_spec(i, source_key=f"{source_key}-{i}", credentials_secret=None) for i in range(3)]
    other = bench_spec(3, source_key=f"{source_key}-other")
    config = SplendorConfig.from_env()
    async with SplendorClient(config) as client:
        await onboard(client, [*specs, other])
    path = tmp_path / "connectors.yaml"
    path.write_text(connectors_yaml(specs))

    result = await apply(str(path))
    assert result.ok and result.applied == [] and result.slots_created == 3, result

    assert [await _has_slot(config, spec.source_key) for spec in specs] == [True] * 3
    assert not await _has_slot(config, other.source_key)
    assert (await apply(str(path))).slots_created == 0


def test_cli_commands_are_registered_and_plan_checks(tmp_path: Path) -> None:
    import typer

    from splendor_flows.cli.fleet_commands import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    help_text = runner.invoke(app, ["--help"]).output
    assert all(name in help_text for name in ("plan", "apply", "fleet"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - provider_key: stripe\n    source_key: x\n")
    result = runner.invoke(app, ["plan", str(bad)])
    assert result.exit_code == 1
    assert "sources[0] (x).dataset_id" in result.output + (result.stderr if result.stderr_bytes else "")


async def test_apply_leaves_the_slots_of_the_sources_it_onboards_to_their_connect(
    emulator: Emulator, tmp_path: Path, source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source apply creates gets its slot from its connect pipeline; apply's own pass over the file's
    sources does not ask for it a second time."""
    secret = f"creds-{source_key}"[:60].lower()
    await Secret(value=CREDENTIALS).save(secret, overwrite=True)
    keys = [f"{source_key}-a", f"{source_key}-b"]
    path = tmp_path / "connectors.yaml"
    _write(path, keys, secret)
    asked: list[str] = []

    async def recorded(scopes: Iterable[Scope]) -> int:
        listed = list(scopes)
        asked.extend(s.source_key for s in listed)
        return await ensure_source_limits(listed)

    monkeypatch.setattr(plan_apply, "ensure_source_limits", recorded)
    result = await apply(str(path))
    assert result.ok and sorted(result.applied) == keys, result.failed
    assert asked == [] and result.slots_created == 0
    config = SplendorConfig.from_env()
    assert [await _has_slot(config, key) for key in keys] == [True, True]
