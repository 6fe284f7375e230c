"""`splendor-flows`: run the flows from a terminal (in-process; runs still show up in the Prefect UI).

Commands talk to the API named by SPLENDOR_API_BASE / SPLENDOR_TENANT_ID / SPLENDOR_TOKEN, or to a
"Splendor Credentials" block given with --credentials-block. Tokens are never printed.
"""

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from splendor_flows.cli import fleet_commands

app = typer.Typer(
    name="splendor-flows",
    help="Onboard, sync and upload to Splendor sources with the project's Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

CredentialsOption = Annotated[
    str | None,
    typer.Option(
        "--credentials-block", "-b", help="Splendor Credentials block; default: SPLENDOR_* variables."
    ),
]
SyncIdOption = Annotated[
    str | None, typer.Option("--sync-id", help="Resume the pipeline that used this sync_id.")
]


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def show(title: str, values: BaseModel | dict[str, Any], skip: tuple[str, ...] = ("steps",)) -> None:
    data = values.model_dump(mode="json") if isinstance(values, BaseModel) else values
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in data.items():
        if name not in skip and value not in (None, [], {}):
            table.add_row(name, escape(str(value)))
    console.print(table)


def run_flow(coro: Any, resume_hint: str | None = None) -> Any:
    """Run a flow coroutine and turn a pipeline failure into one readable line instead of a traceback."""
    from splendor_api import SplendorError
    from splendor_flows.engine.errors import StepError

    try:
        return asyncio.run(coro)
    except (StepError, SplendorError) as exc:
        fail(f"{exc}\n{resume_hint}" if resume_hint else str(exc))


def new_sync_id(given: str | None) -> str:
    # Fixed before the run starts so a failure can say exactly how to resume it.
    return given or str(uuid.uuid4())


def load_spec(path: Path) -> Any:
    from splendor_flows.specs.source import SourceSpec, describe_validation_error

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        fail(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}")
    if not isinstance(document, dict):
        fail(f"{path} must hold one source spec (a mapping of fields), not {type(document).__name__}")
    if "sources" in document:
        fail(f"{path} looks like a connectors file (it has `sources:`); connect takes one source spec")
    try:
        return SourceSpec.model_validate(document)
    except ValidationError as exc:
        fail(f"{path}: {describe_validation_error(exc)}")


@app.command()
def demo() -> None:
    """Onboard and sync a Stripe source against an embedded emulator (same as `make demo`)."""
    from splendor_flows.demo.run import main as demo_main

    raise typer.Exit(demo_main())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def emulator(ctx: typer.Context) -> None:
    """Run the Splendor API emulator in the foreground; takes the flags of `python -m splendor_emulator`."""
    from splendor_emulator.__main__ import main as emulator_main

    raise typer.Exit(emulator_main(list(ctx.args)))


@app.command()
def connect(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="One source spec in YAML.")],
    sync_id: SyncIdOption = None,
    force: Annotated[bool, typer.Option(help="Re-run every step even when a checkpoint exists.")] = False,
    secret_id: Annotated[str | None, typer.Option(help="OAuth secret_id from the consent redirect.")] = None,
    credentials_block: CredentialsOption = None,
) -> None:
    """Onboard one source: discover, create, credentials, connection, first sync, ingestion."""
    spec = load_spec(spec_file)
    from splendor_flows.flows.connect_source import connect_source

    sync_id = new_sync_id(sync_id)
    summary = run_flow(
        connect_source(
            spec=spec, sync_id=sync_id, force=force, secret_id=secret_id, credentials_block=credentials_block
        ),
        resume_hint=f"resume with: splendor-flows connect {spec_file} --sync-id {sync_id}",
    )
    show(f"connect-source {spec.source_key}", summary)


@app.command()
def sync(
    source_key: Annotated[str, typer.Argument(help="Key of an onboarded source.")],
    sync_id: SyncIdOption = None,
    force: Annotated[bool, typer.Option(help="Start a new sync even when this sync_id has one.")] = False,
    credentials_block: CredentialsOption = None,
) -> None:
    """Sync an onboarded source once, then hand the data to ingestion and wait until it is ready."""
    from splendor_flows.flows.sync_source import sync_source

    sync_id = new_sync_id(sync_id)
    summary = run_flow(
        sync_source(
            source_key=source_key,
            sync_id=sync_id,
            force=force,
            trigger="manual",
            credentials_block=credentials_block,
        ),
        resume_hint=f"resume with: splendor-flows sync {source_key} --sync-id {sync_id}",
    )
    show(f"sync-source {source_key}", summary)


@app.command()
def upload(
    source_key: Annotated[str, typer.Argument(help="Key of the source to upload to.")],
    files: Annotated[list[Path], typer.Argument(help="Files to upload.")],
    upload_id: Annotated[str | None, typer.Option(help="Resume the upload that used this upload_id.")] = None,
    allow_empty: Annotated[bool, typer.Option(help="Upload empty files too.")] = False,
    max_parallel_parts: Annotated[int, typer.Option(min=1, max=64, help="Parts in flight at once.")] = 4,
    credentials_block: CredentialsOption = None,
) -> None:
    """Upload files through the hosted upload API (resumable) and announce each one with an event."""
    import splendor_flows.tasks.uploads as uploads
    from splendor_flows.flows.upload import upload_files
    from splendor_flows.orchestration.runtime import use_runtime

    paths = [str(f) for f in files]
    try:
        local = uploads.inspect_files(paths, allow_empty=allow_empty)
    except uploads.UploadInputError as exc:
        fail(str(exc))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars = {f.filename: progress.add_task(f.filename, total=max(f.size, 1)) for f in local}

        def advance(name: str, sent: int) -> None:
            if name in bars:
                progress.advance(bars[name], sent)

        with use_runtime(upload_progress=advance):
            done = run_flow(
                upload_files(
                    source_key=source_key,
                    paths=paths,
                    upload_id=upload_id,
                    allow_empty=allow_empty,
                    max_parallel_parts=max_parallel_parts,
                    credentials_block=credentials_block,
                )
            )
    table = Table(title=f"Uploaded to {source_key}")
    for column in ("file", "bytes", "mode", "parts", "upload session", "key", "ingest run"):
        table.add_column(column)
    for item in done:
        table.add_row(
            item.filename,
            str(item.bytes),
            item.mode,
            str(item.parts),
            item.upload_session_id,
            item.key,
            item.ingest_run_id or "-",
        )
    console.print(table)


@app.command()
def whoami(credentials_block: CredentialsOption = None) -> None:
    """Show who the configured token is: tenant, role, admin or not, plan. Never the token."""
    from splendor_api import SplendorError
    from splendor_flows.engine.errors import StepError
    from splendor_flows.orchestration.api import load_config, open_client

    async def look() -> tuple[Any, str, Any, str | None]:
        config = await load_config(credentials_block)
        tenant = config.tenant
        async with open_client(credentials_block) as client:
            me = await client.me()
            problem = None
            try:
                access = await client.preflight()
            except SplendorError as exc:
                access, problem = me.tenant(tenant), str(exc)
        return config, tenant, (me, access), problem

    try:
        config, tenant, (me, access), problem = asyncio.run(look())
    except (SplendorError, StepError, ValueError) as exc:
        fail(str(exc))
    rows: dict[str, Any] = {
        "api": config.api_base,
        "user": me.user_id + (f" <{me.email}>" if me.email else ""),
        "tenant": tenant,
        "token kind": "tenant API key" if config.is_tenant_api_key else "user token",
    }
    if access is not None:
        rows |= {
            "role": access.role,
            "is_admin": access.is_admin,
            "plan": access.plan,
            "rbac_enabled": access.rbac_enabled,
        }
    show("whoami", rows)
    if problem:
        # Still a valid identity (members may upload); only the connector pipelines need admin.
        errors.print(f"[yellow]warning:[/] {escape(problem)}")


fleet_commands.register(app)


def main() -> None:
    app(prog_name="splendor-flows")


if __name__ == "__main__":
    sys.exit(main())
