"""Onboard many sources straight through the API client: benchmark and test setup, not the thing measured."""

import asyncio
from typing import Any

from splendor_api import SplendorClient, SplendorConfig, models
from splendor_flows.specs.source import SourceSpec

# The emulator's default tenant and its admin token: every benchmark onboards and runs there.
TENANT = "acme"
TOKEN = "acme-admin-token"

STRIPE_CREDENTIALS: dict[str, Any] = {
    "api_key": "sk_test_bench0000000000",
    "account_id": "acct_bench1",
    "start_date": "2026-01-01",
}


def bench_spec(index: int, provider_key: str = "stripe", **overrides: Any) -> SourceSpec:
    values: dict[str, Any] = dict(
        provider_key=provider_key,
        source_key=f"{provider_key}-{index:04d}",
        dataset_id="bench",
        bucket="acme-connectors",
        iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
        streams=["charges"],
        credentials_secret="bench-stripe-credentials",
    )
    values.update(overrides)
    return SourceSpec(**values)


async def onboard(
    client: SplendorClient,
    specs: list[SourceSpec],
    credentials: dict[str, Any] | None = None,
    concurrency: int = 32,
) -> dict[str, int]:
    """Create, provision and connect each source (API-key providers with the Stripe-shaped secret)."""
    slots = asyncio.Semaphore(concurrency)
    existing = {s.source_key: s.source_id for s in await client.list_sources()}

    async def one(spec: SourceSpec) -> tuple[str, int]:
        async with slots:
            source_id = existing.get(spec.source_key)
            if source_id is None:
                created = await client.create_airbyte_source(
                    models.CreateAirbyteSource(
                        provider_key=spec.provider_key,
                        connector_key=spec.connector_key or spec.provider_key,
                        connector_name=spec.connector_name or spec.provider_key,
                        source_key=spec.source_key,
                        source_name=spec.source_name or spec.source_key,
                        dataset_id=spec.dataset_id,
                        bucket=spec.bucket,
                        iam_role_arn=spec.iam_role_arn,
                        streams=spec.streams,
                        schedule_type="manual",
                    )
                )
                source_id = created.source.source_id
            await client.provision(source_id, credentials or STRIPE_CREDENTIALS)
            await client.create_connection(source_id, spec.streams)
            return spec.source_key, source_id

    return dict(await asyncio.gather(*(one(s) for s in specs)))


def connectors_yaml(specs: list[SourceSpec]) -> str:
    import yaml

    entries = [s.model_dump(mode="json", exclude_defaults=True) for s in specs]
    return yaml.safe_dump({"version": 1, "sources": entries}, sort_keys=False)


async def onboard_at(api_base: str, specs: list[SourceSpec], concurrency: int = 50) -> dict[str, int]:
    """`onboard` through a client of its own, as the benchmarks' tenant, on the emulator at `api_base`."""
    async with SplendorClient(SplendorConfig(api_base=api_base, tenant_id=TENANT, token=TOKEN)) as client:
        return await onboard(client, specs, concurrency=concurrency)
