"""`make demo`: onboard a Stripe source against the embedded emulator, then sync it once more.

Everything runs locally: the emulator on a free loopback port (its state kept in var/ so a second
demo reuses the source it created), and Prefect's ephemeral API with its database under
.prefect-home/ (the same one `make server` serves, so the runs show up in the UI afterwards).
"""

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from splendor_flows.specs.source import SourceSpec

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var"
DEMO_TOKEN = "acme-admin-token"  # the emulator's documented seed token for tenant "acme"
DEMO_SECRET_BLOCK = "demo-stripe-credentials"

console = Console()


def demo_spec() -> "SourceSpec":
    from splendor_flows.specs.source import SourceSpec

    return SourceSpec(
        provider_key="stripe",
        source_key="stripe-demo",
        source_name="Stripe (demo)",
        dataset_id="payments",
        bucket="acme-connectors",
        iam_role_arn="arn:aws:iam::123456789012:role/acme-splendor",
        streams=["charges", "customers", "invoices"],
        credentials_secret=DEMO_SECRET_BLOCK,
        search_config={"text_fields": [{"field": "description", "boost": 2.0, "natural_language": True}]},
    )


async def save_demo_credentials() -> None:
    from prefect.blocks.system import Secret

    # A throw-away test key in the emulator's Stripe format; real keys belong in a Secret block too.
    value = {
        "api_key": "sk_test_" + secrets.token_hex(12),
        "account_id": "acct_demo0001",
        "start_date": "2026-01-01",
    }
    await Secret(value=value).save(DEMO_SECRET_BLOCK, overwrite=True)


async def run_demo(base_url: str, bucket_root: Path) -> int:
    from splendor_flows.flows.connect_source import connect_source
    from splendor_flows.flows.sync_source import sync_source

    os.environ.update(SPLENDOR_API_BASE=base_url, SPLENDOR_TENANT_ID="acme", SPLENDOR_TOKEN=DEMO_TOKEN)
    await save_demo_credentials()
    spec = demo_spec()

    console.rule("[bold]1/2 connect-source: discover → create → provision → connect → sync → ingest")
    started = time.monotonic()
    onboarded = await connect_source(spec=spec)
    console.rule("[bold]2/2 sync-source: the recurring sync of the same source")
    synced = await sync_source(source_key=spec.source_key, trigger="manual")
    elapsed = time.monotonic() - started

    table = Table(title=f"Demo finished in {elapsed:.1f} s", show_lines=False)
    table.add_column("")
    table.add_column("connect-source")
    table.add_column("sync-source")
    for label, attr in [
        ("source id", "source_id"),
        ("sync_id", "sync_id"),
        ("run", "run_id"),
        ("status", "status"),
        ("records", "records_synced"),
        ("bytes", "bytes_synced"),
        ("ingest", "ingest_status"),
        ("documents", "documents"),
    ]:
        table.add_row(label, str(getattr(onboarded, attr)), str(getattr(synced, attr)))
    console.print(table)
    landed = sorted(bucket_root.rglob(f"run-{synced.run_id}.jsonl"))
    console.print(f"Landed files of run {synced.run_id}:")
    for path in landed:
        lines = sum(1 for _ in path.open())
        console.print(f"  {path.relative_to(REPO)}  ({lines} records)")
    for warning in onboarded.warnings + synced.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(
        "\nSee these runs, their artifacts and events in the Prefect UI: [bold]make server[/] "
        "then open http://127.0.0.1:4200 (it reads the same database, .prefect-home/)."
    )
    ok = onboarded.status == "succeeded" and synced.status == "succeeded" and bool(landed)
    return 0 if ok else 1


def main() -> int:
    from splendor_emulator import EmulatorConfig, running_emulator

    VAR.mkdir(exist_ok=True)
    bucket_root = VAR / "demo-buckets"
    config = EmulatorConfig(sync_seconds=3.0, ingest_seconds=0.3, bucket_root=bucket_root)
    with running_emulator(config, state_path=VAR / "demo-emulator.sqlite") as emu:
        console.print(f"Splendor emulator listening on {emu.base_url} (state in var/demo-emulator.sqlite)")
        return asyncio.run(run_demo(emu.base_url, bucket_root))


if __name__ == "__main__":
    sys.exit(main())
