"""`splendor-flows plan | apply | fleet FILE`: connectors as code from a terminal.

`plan` exits 0 when the tenant matches the file; with `--check` it exits 2 when there are changes
(for a CI job that flags drift). `apply` prints the plan, then converges the tenant to the file.
`fleet` runs the sync-fleet flow in this process (the run shows up in the Prefect UI).
"""

import asyncio
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)

FileArgument = Annotated[Path, typer.Argument(metavar="FILE", help="Connectors file (YAML).")]
CredentialsOption = Annotated[
    str | None,
    typer.Option(
        "--credentials-block", "-b", help="Splendor Credentials block; default: SPLENDOR_* variables."
    ),
]
STYLE = {
    "create": "[green]+ create[/]",
    "update": "[yellow]~ update[/]",
    "unchanged": "[dim]= unchanged[/]",
    "blocked": "[red]! blocked[/]",
    "not-in-file": "[cyan]? not in file[/]",
}


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _run(coro: Any) -> Any:
    from splendor_api import SplendorError
    from splendor_flows.engine.errors import StepError
    from splendor_flows.specs.connectors_file import ConnectorsFileError

    try:
        return asyncio.run(coro)
    except ConnectorsFileError as exc:
        _fail(str(exc))
    except (StepError, SplendorError) as exc:
        _fail(str(exc))


def show_plan(plan: Any) -> None:
    table = Table(title=f"Plan for tenant {plan.tenant} ({plan.file})", title_justify="left")
    table.add_column("action")
    table.add_column("source")
    table.add_column("details", overflow="fold")
    for change in plan.changes:
        label = "new" if change.create else (str(change.source_id) if change.source_id else "")
        table.add_row(STYLE[change.action], f"{change.source_key} ({label})", change.describe())
    console.print(table)
    console.print(f"Plan: {plan.totals()}.")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        file: FileArgument,
        credentials_block: CredentialsOption = None,
        check: Annotated[bool, typer.Option("--check", help="Exit 2 when there are changes.")] = False,
    ) -> None:
        """Show what `apply` would change: create / update (which fields) / unchanged / not in the file."""
        from splendor_flows.connectors.plan_apply import plan

        result = _run(plan(str(file), credentials_block))
        show_plan(result)
        if check and result.has_changes:
            raise typer.Exit(2)

    @app.command("apply")
    def apply_command(file: FileArgument, credentials_block: CredentialsOption = None) -> None:
        """Converge the tenant to the file: onboard, update config, re-submit changed credentials."""
        from splendor_flows.connectors.plan_apply import apply

        result = _run(apply(str(file), credentials_block))
        show_plan(result.plan)
        for key in result.applied:
            console.print(f"[green]applied[/] {key}")
        for key, message in result.failed.items():
            errors.print(f"[red]failed[/] {key}: {message}")
        if not result.ok:
            raise typer.Exit(1)

    @app.command("fleet")
    def fleet_command(
        file: FileArgument,
        only: Annotated[
            list[str] | None, typer.Option("--only", help="Source key or glob; repeat for more.")
        ] = None,
        max_concurrency: Annotated[int, typer.Option(help="API requests in flight at once.")] = 50,
        sync_id: Annotated[
            str | None, typer.Option(help="Resume the fleet run that used this sync_id.")
        ] = None,
        wait_for_ingest: Annotated[bool, typer.Option(help="Wait until ingestion is ready.")] = False,
        credentials_block: CredentialsOption = None,
    ) -> None:
        """Sync every source of the file (or --only some) concurrently in one flow run."""
        from splendor_flows.flows.fleet import FleetFailed
        from splendor_flows.flows.sync_fleet import sync_fleet

        try:
            summary = _run(
                sync_fleet(
                    connectors_file=str(file),
                    only=only or None,
                    max_concurrency=max_concurrency,
                    credentials_block=credentials_block,
                    sync_id=sync_id,
                    wait_for_ingest=wait_for_ingest,
                )
            )
        except FleetFailed as exc:
            summary = exc.summary
            errors.print(f"[bold red]error:[/] {exc}")
        table = Table(title=f"Fleet sync {summary.sync_id}", title_justify="left")
        for column in ("source", "status", "run", "records", "refresh calls", "note"):
            table.add_column(column)
        for o in sorted(summary.outcomes, key=lambda o: (o.status != "failed", o.source_key)):
            table.add_row(
                o.source_key,
                o.status,
                f"{o.run_id} {o.run_status or ''}".strip() if o.run_id else "",
                str(o.records_synced or ""),
                str(o.refresh_calls),
                o.error or "; ".join(o.warnings),
            )
        console.print(table)
        console.print(f"{summary.succeeded} of {summary.sources} source(s) succeeded.")
        if summary.failed:
            raise typer.Exit(1)
