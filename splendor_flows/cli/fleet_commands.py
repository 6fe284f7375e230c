"""`splendor-flows plan | apply | fleet FILE`: connectors as code from a terminal.

`plan` exits 0 when the tenant matches the file; with `--check` it exits 2 when there are changes
(for a CI job that flags drift). `apply` prints the plan, then converges the tenant to the file.
`fleet` runs the sync-fleet flow in this process (the run shows up in the Prefect UI).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from splendor_flows.cli.console import CredentialsOption, VerboseOption, cell, console, error, fail, run
from splendor_flows.cli.live_view import (
    AllRowsOption,
    Board,
    Watch,
    apply_tracker,
    fitting,
    fleet_tracker,
    hidden_rows_line,
)

if TYPE_CHECKING:
    from splendor_flows.connectors.plan_apply import ApplyResult, Change, Plan
    from splendor_flows.fleet.run import FleetSummary

FileArgument = Annotated[Path, typer.Argument(metavar="FILE", help="Connectors file (YAML).")]
STYLE = {
    "create": "[green]+ create[/]",
    "update": "[yellow]~ update[/]",
    "unchanged": "[dim]= unchanged[/]",
    "blocked": "[red]! blocked[/]",
    "not-in-file": "[cyan]? not in file[/]",
}


def plan_table(plan: "Plan", result: "ApplyResult | None" = None, show_all: bool = True) -> Table:
    """The plan, one row per source; after `apply`, with what became of each change, and on a terminal
    cut to the rows that need attention when they would not fit (`show_all` keeps every row)."""
    table = Table(title=cell(f"Plan for tenant {plan.tenant} ({plan.file})"), title_justify="left")
    table.add_column("action")
    table.add_column("source")
    table.add_column("details", overflow="fold")
    if result is not None:
        table.add_column("result", overflow="fold")

    def attention(change: "Change") -> bool:
        return change.action == "blocked" or (result is not None and change.source_key in result.failed)

    rows, hidden = fitting(plan.changes, attention, console, show_all)
    for change in rows:
        label = "new" if change.create else (str(change.source_id) if change.source_id else "")
        cells = [STYLE[change.action], cell(f"{change.source_key} ({label})"), cell(change.describe())]
        if result is not None:
            cells.append(apply_outcome(change.source_key, result))
        table.add_row(*cells)
    if hidden:
        table.caption, table.caption_justify = hidden_rows_line(hidden), "left"
    return table


def apply_outcome(source_key: str, result: "ApplyResult") -> str:
    if source_key in result.failed:
        return f"[red]failed:[/] {cell(result.failed[source_key])}"
    return "[green]applied[/]" if source_key in result.applied else ""


def show_plan(plan: "Plan") -> None:
    console.print(plan_table(plan))
    console.print(cell(f"Plan: {plan.totals()}."))


def fleet_table(summary: "FleetSummary", show_all: bool = True) -> Table:
    """One row per source, failures first; errors keep their "[step]" prefix. On a terminal, when the
    rows would not fit, only the failed sources and those with warnings (`show_all` keeps every row)."""
    table = Table(title=cell(f"Fleet sync {summary.sync_id}"), title_justify="left")
    for column in ("source", "status", "run", "records", "refresh calls", "note"):
        table.add_column(column)
    ordered = sorted(summary.outcomes, key=lambda o: (o.status != "failed", o.source_key))
    rows, hidden = fitting(ordered, lambda o: o.status == "failed" or bool(o.warnings), console, show_all)
    if hidden:
        table.caption, table.caption_justify = hidden_rows_line(hidden), "left"
    for o in rows:
        table.add_row(
            cell(o.source_key),
            cell(o.status),
            cell(f"{o.run_id} {o.run_status or ''}".strip() if o.run_id else ""),
            cell(o.records_synced or ""),
            cell(o.refresh_calls),
            cell(o.error or "; ".join(o.warnings)),
        )
    return table


def file_keys(file: Path, only: list[str] | None = None) -> set[str] | None:
    """The source keys a command over this file works on; None when the file does not load (the
    command itself then reports why, as one error line)."""
    from splendor_flows.specs.connectors_file import ConnectorsFileError, load_connectors

    try:
        return {spec.source_key for spec in load_connectors(file).select(only)}
    except (ConnectorsFileError, OSError):
        return None


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
    def apply_command(
        file: FileArgument,
        credentials_block: CredentialsOption = None,
        verbose: VerboseOption = False,
        show_all: AllRowsOption = False,
    ) -> None:
        """Converge the tenant to the file: onboard, update config, re-submit changed credentials."""
        from splendor_flows.connectors.plan_apply import apply

        # Onboardings are connect-source flow runs: their events name the source, their final state
        # event ends it.
        board = Board("apply")
        watch = Watch(board, apply_tracker(), ("splendor.", "prefect.flow-run."), source_keys=file_keys(file))
        result = run(apply(str(file), credentials_block), verbose=verbose, watch=watch)
        console.print(plan_table(result.plan, result, show_all))
        made = result.slots_created
        slots = f" Made the Prefect slots of {made} source(s)." if made else ""
        console.print(
            cell(
                f"Plan: {result.plan.totals()}. Applied {len(result.applied)}, failed {len(result.failed)}."
                + slots
            ),
            soft_wrap=True,
        )
        if result.failed:
            fail(f"{len(result.failed)} source(s) not applied: {', '.join(sorted(result.failed))}")
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
        verbose: VerboseOption = False,
        show_all: AllRowsOption = False,
    ) -> None:
        """Sync every source of the file (or --only some) concurrently in one flow run."""
        from splendor_flows.fleet.run import FleetFailed
        from splendor_flows.flows.sync_fleet import sync_fleet

        keys = file_keys(file, only)
        board = Board("fleet", total=len(keys) if keys is not None else None)
        watch = Watch(board, fleet_tracker(wait_for_ingest), source_keys=keys)
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
                verbose=verbose,
                watch=watch,
            )
        except FleetFailed as exc:
            summary = exc.summary
            error(str(exc))
        console.print(fleet_table(summary, show_all))
        console.print(f"{summary.succeeded} of {summary.sources} source(s) succeeded.")
        if summary.failed:
            raise typer.Exit(1)
