"""`splendor-flows`: run the flows from a terminal (in-process; runs still show up in the Prefect UI).

Commands talk to the API named by SPLENDOR_API_BASE / SPLENDOR_TENANT_ID / SPLENDOR_TOKEN, or to a
"Splendor Credentials" block given with --credentials-block. Tokens are never printed.
"""

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from splendor_flows.cli import automation_commands, discover_commands, doctor, fleet_commands, status
from splendor_flows.cli.console import CredentialsOption, VerboseOption, cell, console, fail, run, show, warn
from splendor_flows.cli.live_view import (
    AllRowsOption,
    Board,
    Watch,
    fitting,
    hidden_rows_line,
    repair_tracker,
)
from splendor_flows.engine.repair import MAX_ATTEMPTS_LIMIT, MAX_RUNS_LIMIT

app = typer.Typer(
    name="splendor-flows",
    help="Onboard, sync and upload to Splendor sources with the project's Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
)
SyncIdOption = Annotated[
    str | None, typer.Option("--sync-id", help="Resume the pipeline that used this sync_id.")
]


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
    oauth_secret_block: Annotated[
        str | None,
        typer.Option(help="Secret block holding an OAuth secret_id obtained beforehand (skips the wait)."),
    ] = None,
    secret_id_stdin: Annotated[
        bool,
        typer.Option(
            "--secret-id-stdin",
            help="Read the OAuth secret_id from standard input (one line) when the run asks for it; "
            "on a terminal it is asked for with hidden input anyway.",
        ),
    ] = False,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Onboard one source: discover, create, credentials, connection, first sync, ingestion."""
    from splendor_flows.cli.oauth_prompt import asking_for_secret_id, check_secret_id_options

    check_secret_id_options(secret_id_stdin, oauth_secret_block)
    spec = load_spec(spec_file)
    from splendor_flows.flows.connect_source import connect_source

    sync_id = new_sync_id(sync_id)
    with asking_for_secret_id(secret_id_stdin):
        summary = run(
            connect_source(
                spec=spec,
                sync_id=sync_id,
                force=force,
                oauth_secret_block=oauth_secret_block,
                credentials_block=credentials_block,
            ),
            resume_hint=f"resume with: splendor-flows connect {spec_file} --sync-id {sync_id}",
            verbose=verbose,
            steps=True,
        )
    show(f"connect-source {spec.source_key}", summary)


@app.command()
def sync(
    source_key: Annotated[str, typer.Argument(help="Key of an onboarded source.")],
    sync_id: SyncIdOption = None,
    force: Annotated[
        bool,
        typer.Option(help="Start a new sync even when this sync_id already has one (it gets its own)."),
    ] = False,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Sync an onboarded source once, then hand the data to ingestion and wait until it is ready."""
    from splendor_flows.flows.sync_source import sync_source
    from splendor_flows.source_pipeline import forced_sync_id

    # A forced sync gets its sync_id here rather than in the flow, so the resume line below names it.
    sync_id = forced_sync_id(sync_id, uuid.uuid4().hex) if force and sync_id else new_sync_id(sync_id)
    summary = run(
        sync_source(
            source_key=source_key,
            sync_id=sync_id,
            trigger="manual",
            credentials_block=credentials_block,
        ),
        resume_hint=f"resume with: splendor-flows sync {source_key} --sync-id {sync_id}",
        verbose=verbose,
        steps=True,
    )
    show(f"sync-source {source_key}", summary)


@app.command()
def repair(
    source_key: Annotated[str, typer.Argument(help="Key of the source whose failed ingestion to repair.")],
    run_id: Annotated[
        int | None,
        typer.Option("--run", min=1, help="Repair this sync run only (default: every failed one)."),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_ATTEMPTS_LIMIT, help="Repairs one run may have in all, counted by Splendor."
        ),
    ] = 3,
    max_runs: Annotated[
        int, typer.Option(min=1, max=MAX_RUNS_LIMIT, help="Runs this call repairs, newest first.")
    ] = 10,
    list_only: Annotated[
        bool, typer.Option("--list", help="Only list the failed ingest runs and their error codes.")
    ] = False,
    credentials_block: CredentialsOption = None,
    verbose: VerboseOption = False,
    show_all: AllRowsOption = False,
) -> None:
    """Hand failed ingest runs of the source's syncs to ingestion again and wait until they are ready."""
    from splendor_flows.flows.repair_ingest import repair_ingest

    if list_only:
        list_failed_ingest(source_key, credentials_block)
        return

    report = run(
        repair_ingest(
            source_key=source_key,
            run_id=run_id,
            max_attempts=max_attempts,
            max_runs=max_runs,
            credentials_block=credentials_block,
        ),
        verbose=verbose,
        # One line per run being repaired; the failed runs are known only once the flow has read them.
        watch=Watch(Board(f"repair {source_key}"), repair_tracker(), source_keys={source_key}),
    )
    if not report.runs:
        console.print(f"{cell(source_key)}: no failed ingest run to repair")
        return
    left = report.not_repaired()
    table = Table(title=cell(report.headline()))
    for column in ("run", "verdict", "error codes", "attempts", "queued now", "reason"):
        table.add_column(column)
    rows, hidden = fitting(report.runs, lambda r: r in left, console, show_all)
    if hidden:
        table.caption, table.caption_justify = hidden_rows_line(hidden, "run"), "left"
    for item in rows:
        table.add_row(
            str(item.run_id),
            item.verdict.value,
            cell(", ".join(item.error_codes())),
            str(item.attempts),
            str(item.enqueued),
            cell(item.reason),
        )
    console.print(table)
    if left:
        fail(
            f"{len(left)} run(s) of {source_key} not repaired: "
            + "; ".join(f"run {r.run_id} {r.verdict.value}" for r in left)
        )


def list_failed_ingest(source_key: str, credentials_block: str | None) -> None:
    """One row per failed ingest run of the source's syncs; reads only."""
    from splendor_flows.engine.errors import CONNECT_FIRST, PermanentStepError
    from splendor_flows.engine.repair import FailedRun, failed_runs, read_ingest
    from splendor_flows.orchestration.splendor_clients import open_client

    async def look() -> list[FailedRun]:
        async with open_client(credentials_block, step="repair", source_key=source_key) as client:
            source = await client.find_source(source_key)
            if source is None:
                raise PermanentStepError("repair", source_key, "no such source in the tenant", CONNECT_FIRST)
            return failed_runs(await read_ingest(client, source.source_id))

    runs = run(look())
    if not runs:
        console.print(f"{cell(source_key)}: no failed ingest run")
        return
    table = Table(title=cell(f"Failed ingestion of {source_key}"))
    for column in ("run", "ingest run", "object", "error code", "repairable", "repairs so far"):
        table.add_column(column)
    for item in runs:
        for failure in item.failures:
            table.add_row(
                str(item.run_id),
                cell(failure.ingest_run_id),
                cell(failure.key or "-"),
                cell(failure.error_code or failure.status),
                "yes" if failure.repairable else "no",
                str(item.attempts),
            )
        if item.in_flight:
            table.add_row(
                str(item.run_id), "-", "-", "-", "-", f"{item.attempts} ({item.in_flight} under way)"
            )
    console.print(table)


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
        bars = {f.filename: progress.add_task(cell(f.filename), total=max(f.size, 1)) for f in local}

        def advance(name: str, sent: int) -> None:
            if name in bars:
                progress.advance(bars[name], sent)

        with use_runtime(upload_progress=advance):
            done = run(
                upload_files(
                    source_key=source_key,
                    paths=paths,
                    upload_id=upload_id,
                    allow_empty=allow_empty,
                    max_parallel_parts=max_parallel_parts,
                    credentials_block=credentials_block,
                ),
                steps=True,
            )
    table = Table(title=cell(f"Uploaded to {source_key}"))
    for column in ("file", "bytes", "mode", "parts", "upload session", "key", "ingest run"):
        table.add_column(column)
    for item in done:
        values = (item.filename, item.bytes, item.mode, item.parts, item.upload_session_id, item.key)
        table.add_row(*(cell(v) for v in values), cell(item.ingest_run_id or "-"))
    console.print(table)


@app.command()
def whoami(credentials_block: CredentialsOption = None) -> None:
    """Show who the configured token is: tenant, role, admin or not, plan. Never the token."""
    from splendor_api import SplendorConfig, SplendorError, models
    from splendor_flows.orchestration.splendor_clients import load_config, open_client

    async def look() -> tuple[SplendorConfig, str, models.Me, models.TenantAccess | None, str | None]:
        config = await load_config(credentials_block)
        tenant = config.tenant
        async with open_client(credentials_block) as client:
            me = await client.me()
            try:
                return config, tenant, me, await client.preflight(), None
            except SplendorError as exc:
                return config, tenant, me, me.tenant(tenant), str(exc)

    try:
        config, tenant, me, access, problem = run(look())
    except ValueError as exc:  # an invalid SPLENDOR_* value that is not a ConfigError
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
        warn(problem)


fleet_commands.register(app)
discover_commands.register(app)
doctor.register(app)
automation_commands.register(app)
status.register(app)


def main() -> None:
    app(prog_name="splendor-flows")


if __name__ == "__main__":
    main()
