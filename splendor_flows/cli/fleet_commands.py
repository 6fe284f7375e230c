"""`splendor-flows plan | apply | fleet FILE`: connectors as code from a terminal.

`plan` exits 0 when the tenant matches the file; with `--check` it exits 2 when there are changes
(for a CI job that flags drift). `apply` prints the plan, then converges the tenant to the file.
`fleet` runs the sync-fleet flow in this process (the run shows up in the Prefect UI).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from splendor_flows.cli.console import CredentialsOption, cell, console, error, errors, run

if TYPE_CHECKING:
    from splendor_flows.connectors.plan_apply import Plan
    from splendor_flows.flows.fleet import FleetSummary

FileArgument = Annotated[Path, typer.Argument(metavar="FILE", help="Connectors file (YAML).")]
STYLE = {
    "create": "[green]+ create[/]",
    "update": "[yellow]~ update[/]",
    "unchanged": "[dim]= unchanged[/]",
    "blocked": "[red]! blocked[/]",
    "not-in-file": "[cyan]? not in file[/]",
}


def plan_table(plan: "Plan") -> Table:
    table = Table(title=cell(f"Plan for tenant {plan.tenant} ({plan.file})"), title_justify="left")
    table.add_column("action")
    table.add_column("source")
    table.add_column("details", overflow="fold")
    for change in plan.changes:
        label = "new" if change.create else (str(change.source_id) if change.source_id else "")
        table.add_row(STYLE[change.action], cell(f"{change.source_key} ({label})"), cell(change.describe()))
    return table


def show_plan(plan: "Plan") -> None:
    console.print(plan_table(plan))
    console.print(cell(f"Plan: {plan.totals()}."))


def fleet_table(summary: "FleetSummary") -> Table:
    """One row per source, failures first; errors keep their "[step]" prefix."""
    table = Table(title=cell(f"Fleet sync {summary.sync_id}"), title_justify="left")
    for column in ("source", "status", "run", "records", "refresh calls", "note"):
        table.add_column(column)
    for o in sorted(summary.outcomes, key=lambda o: (o.status != "failed", o.source_key)):
        table.add_row(
            cell(o.source_key),
            cell(o.status),
            cell(f"{o.run_id} {o.run_status or ''}".strip() if o.run_id else ""),
            cell(o.records_synced or ""),
            cell(o.refresh_calls),
            cell(o.error or "; ".join(o.warnings)),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        file: FileArgument,
        credentials_block: CredentialsOption = None,
        check: Annotated[bool, typer.Option("--check", help="Exit 2 when there are changes.")] = False,
    ) -> None:
        """Show what `apply` would change: create / update (which fields) / unchanged / not in the file."""
        from splendor_flows.connectors.plan_apply import plan

        result = run(plan(str(file), credentials_block))
        show_plan(result)
        if check and result.has_changes:
            raise typer.Exit(2)

    @app.command("apply")
    def apply_command(file: FileArgument, credentials_block: CredentialsOption = None) -> None:
        """Converge the tenant to the file: onboard, update config, re-submit changed credentials."""
        from splendor_flows.connectors.plan_apply import apply

        result = run(apply(str(file), credentials_block))
        show_plan(result.plan)
        for key in result.applied:
            console.print(f"[green]applied[/] {cell(key)}", soft_wrap=True)
        for key, message in result.failed.items():
            errors.print(f"[red]failed[/] {cell(key)}: {cell(message)}", soft_wrap=True)
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
            summary = run(
                sync_fleet(
                    connectors_file=str(file),
                    only=only or None,
                    max_concurrency=max_concurrency,
                    credentials_block=credentials_block,
                    sync_id=sync_id,
                    wait_for_ingest=wait_for_ingest,
                ),
                reraise=(FleetFailed,),
            )
        except FleetFailed as exc:
            summary = exc.summary
            error(str(exc))
        console.print(fleet_table(summary))
        console.print(f"{summary.succeeded} of {summary.sources} source(s) succeeded.")
        if summary.failed:
            raise typer.Exit(1)
