"""`splendor-flows automations apply [--notify-url URL] [--plan]`: the automations on a Prefect server.

Talks to the server Prefect's own settings name (PREFECT_API_URL, with PREFECT_API_AUTH_STRING or
PREFECT_API_KEY when it requires credentials), or to `--api-url`. `make deploy` runs it after
`prefect deploy --all`; the stack runs the same code.
"""

from typing import TYPE_CHECKING, Annotated

import typer

from splendor_flows.cli.console import cell, console, fail, warn

if TYPE_CHECKING:
    from splendor_flows.orchestration.automations import Applied

automations_app = typer.Typer(
    help="The automations of deployments/automations.yaml (safety, the upload trigger, notifications) "
    "on a Prefect server.",
    no_args_is_help=True,
)
STYLE = {
    "create": "[green]+ create   [/]",
    "update": "[yellow]~ update   [/]",
    "unchanged": "[dim]= unchanged[/]",
    "skip": "[cyan]- skip     [/]",
    "delete": "[red]x delete   [/]",
}


def show_changes(applied: "Applied", title: str) -> None:
    """One line per block and automation (a line each, so the output greps and logs well)."""
    console.print(cell(title), soft_wrap=True)
    width = max((len(c.name) for c in applied.changes), default=0)
    for change in applied.changes:
        text = f"{change.kind.ljust(10)}  {change.name.ljust(width)}  {change.detail}".rstrip()
        console.print(f"  {STYLE[change.action]}  {cell(text)}", soft_wrap=True)


@automations_app.command("apply")
def apply_command(
    notify_url: Annotated[
        str | None,
        typer.Option(
            help="Webhook the notification automations post to (kept in a secret field of the "
            "custom-webhook/splendor-notify block). Default: $SPLENDOR_NOTIFY_URL, else the block "
            "already on the server, else the notification automations are skipped."
        ),
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Print what apply would change; change nothing.")
    ] = False,
    within: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=SECONDS",
            help="Change an automation's window, e.g. splendor-source-freshness=180000 (repeatable).",
        ),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(help="Prefect API URL; default: PREFECT_API_URL (or the active profile).")
    ] = None,
) -> None:
    """Create or update, by name, the automations the deployments rely on; leave those that match.

    Run it after `prefect deploy --all`: the upload trigger runs the after-upload deployment.
    """
    from prefect.settings import get_current_settings

    from splendor_flows.orchestration import automations

    settings = get_current_settings().api
    url = api_url or settings.url
    if not url:
        fail("no Prefect server: set PREFECT_API_URL (or pass --api-url)")
    auth_string = settings.auth_string.get_secret_value() if settings.auth_string else None
    api_key = settings.key.get_secret_value() if settings.key else None
    try:
        chosen = automations.with_windows(automations.load(), automations.parse_windows(within or []))
        run = automations.plan if plan else automations.apply
        applied = run(url, chosen, notify_url=notify_url, auth_string=auth_string, api_key=api_key)
    except (ValueError, automations.AutomationsError) as exc:
        fail(str(exc))
    show_changes(applied, f"{'Plan for' if plan else 'Applied to'} the automations on {url}:")
    for line in applied.warnings:
        warn(line)
    verdict = "would change nothing" if plan and not applied.changed else applied.totals()
    console.print(cell(f"{'Plan' if plan else 'Applied'}: {verdict}."))


def register(app: typer.Typer) -> None:
    app.add_typer(automations_app, name="automations")
