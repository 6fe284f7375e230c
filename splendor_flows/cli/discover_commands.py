"""`splendor-flows discover` and `splendor-flows catalog search`: what a connector offers, before (and
while) onboarding it.

Splendor lists a connector's streams with their fields only for a source whose credentials are ready
(discover-schema); before that, discovery gives the credential spec and the curated default streams.
`discover` shows what is known: both, plus every stream's fields and proposed role with `--source`.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from splendor_flows.cli.console import CredentialsOption, cell, console, fail, run, show

if TYPE_CHECKING:
    from splendor_api import models
    from splendor_flows.tasks.discover import ProviderDetails

catalog_app = typer.Typer(
    help="Search the Airbyte catalog (the long tail of connectors).", no_args_is_help=True
)


def _detail(exc: Exception) -> str:
    """A step error's message without the "[step] source '...'" prefix: these commands have no source."""
    from splendor_flows.engine.errors import StepError

    if isinstance(exc, StepError):
        return exc.detail + (f" — {exc.hint}" if exc.hint else "")
    return str(exc)


def credential_rows(spec: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(field, type, required, secret) per property of a connector's JSON-Schema credential spec."""
    required = set(spec.get("required") or [])
    properties = spec.get("properties") or {}
    return [
        (
            name,
            str(prop.get("type", "")),
            "yes" if name in required else "no",
            "yes" if prop.get("airbyte_secret") else "",
        )
        for name, prop in properties.items()
        if isinstance(prop, dict)
    ]


def stream_table(details: "ProviderDetails", streams: "list[models.StreamSchema]") -> Table:
    from splendor_flows.engine.classification import propose

    proposal = propose(streams, [s.name for s in streams])
    table = Table(title=cell(f"Streams of {details.label}"), title_justify="left")
    for column in ("stream", "default", "field", "type", "proposed role", "why"):
        table.add_column(column)
    for row in proposal.fields:
        default = "yes" if row.stream in details.default_streams else ""
        table.add_row(*(cell(v) for v in (row.stream, default, row.field, row.type, row.role, row.reason)))
    return table


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")

    @app.command()
    def discover(
        provider: Annotated[
            str | None, typer.Argument(metavar="PROVIDER", help="A curated provider_key, e.g. stripe.")
        ] = None,
        definition: Annotated[
            str | None,
            typer.Option("--definition", help="An Airbyte catalog source_definition_id instead of PROVIDER."),
        ] = None,
        source: Annotated[
            str | None,
            typer.Option(
                "--source",
                help="source_key of a source of this connector with ready credentials: list every stream "
                "and its fields with a proposed role.",
            ),
        ] = None,
        credentials_block: CredentialsOption = None,
    ) -> None:
        """Show a connector: how it authenticates, its credential fields, its streams and their fields."""
        if (provider is None) == (definition is None):
            fail("give exactly one of PROVIDER or --definition ID")
        from splendor_flows.engine.errors import StepError

        try:
            details, streams = run(
                _discover(provider, definition, source, credentials_block), reraise=(StepError,)
            )
        except StepError as exc:
            fail(_detail(exc))
        show(
            f"Connector {details.label}",
            {
                "name": details.name,
                "provider_key": details.provider_key,
                "source_definition_id": details.source_definition_id,
                "auth_mode": details.auth_mode,
                "oauth_mode": details.oauth_mode,
                "default streams": ", ".join(details.default_streams),
            },
        )
        creds = Table(title="Credential fields (the Secret block's JSON object)", title_justify="left")
        for column in ("field", "type", "required", "secret"):
            creds.add_column(column)
        for values in credential_rows(details.connection_specification):
            creds.add_row(*(cell(v) for v in values))
        console.print(creds)
        if streams is None:
            console.print(
                "Streams and fields: Splendor discovers them per source once its credentials are ready; "
                "run again with --source SOURCE_KEY after `splendor-flows connect` has provisioned one.",
                soft_wrap=True,
            )
        else:
            console.print(stream_table(details, streams))

    @catalog_app.command("search")
    def search(
        text: Annotated[
            str, typer.Argument(metavar="TEXT", help="Part of a connector's name or repository.")
        ],
        credentials_block: CredentialsOption = None,
    ) -> None:
        """List the catalog connectors matching TEXT (use the id as a spec's source_definition_id)."""
        found = run(_search(text, credentials_block))
        if not found:
            fail(f"no catalog connector matches '{text}'")
        table = Table(title=cell(f"Catalog connectors matching '{text}'"), title_justify="left")
        for column in ("source_definition_id", "name", "repository", "tag"):
            table.add_column(column, no_wrap=column == "source_definition_id")
        for d in found:
            table.add_row(
                *(
                    cell(v or "")
                    for v in (d.source_definition_id, d.name, d.docker_repository, d.docker_image_tag)
                )
            )
        console.print(table)


async def _search(text: str, credentials_block: str | None) -> "list[models.SourceDefinition]":
    from splendor_flows.orchestration.splendor_clients import open_client

    async with open_client(credentials_block) as client:
        return await client.search_catalog(text)


async def _discover(
    provider: str | None, definition: str | None, source: str | None, credentials_block: str | None
) -> "tuple[ProviderDetails, list[models.StreamSchema] | None]":
    from splendor_api.models import CredentialStatus
    from splendor_flows.engine.errors import PermanentStepError
    from splendor_flows.orchestration.splendor_clients import open_client
    from splendor_flows.tasks.discover import lookup_definition, lookup_provider

    async with open_client(credentials_block) as client:
        if provider is not None:
            details = await lookup_provider(client, provider, source or "-")
        else:
            assert definition is not None  # the command checked that exactly one is given
            details = await lookup_definition(client, definition, source or "-")
        if source is None:
            return details, None
        found = await client.find_source(source)
        if found is None:
            raise PermanentStepError(
                "discover", source, f"no source with source_key '{source}' in this tenant"
            )
        state = (await client.get_airbyte_source(found.source_id)).airbyte
        if state.airbyte_source_definition_id != details.source_definition_id:
            raise PermanentStepError(
                "discover",
                source,
                f"source '{source}' is a {state.airbyte_source_definition_name or 'another'} source, "
                f"not {details.label}",
            )
        if state.credential_status != CredentialStatus.READY:
            raise PermanentStepError(
                "discover",
                source,
                f"the credentials of source '{source}' are {state.credential_status}, not ready",
                "finish `splendor-flows connect` for it first (Splendor discovers streams only then)",
            )
        return details, await client.discover_schema(found.source_id)
