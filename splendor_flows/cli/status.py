"""`splendor-flows status`: which sources need me? One row per source of the tenant, those needing
attention first, read from Splendor and Prefect without changing anything (flows/tenant_status.py).

Exit codes: 0 nothing needs attention, 1 something does, 2 the command itself failed (one line), so a
cron job or a CI check can use it.
"""

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.table import Table

from splendor_flows.cli.console import CredentialsOption, cell, console, expected_failures, fail

if TYPE_CHECKING:  # without importing Prefect at startup
    from splendor_flows.flows.tenant_status import StatusReport

EXIT_CLEAR = 0
EXIT_ATTENTION = 1
EXIT_FAILED = 2


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        connectors_file: Annotated[
            str | None,
            typer.Option(
                "--connectors-file",
                "-f",
                help="Also show this file's sources Splendor lacks, and mark Splendor's sources it lacks.",
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON for scripts.")] = False,
        credentials_block: CredentialsOption = None,
    ) -> None:
        """The tenant at a glance: each source's scheduler and next run, last sync, freshness, ingest state,
        failures in a row and any wait on a person; those needing attention first. Changes nothing.

        Exit code 0 when nothing needs attention, 1 when something does, 2 when the command failed.
        """
        from splendor_api import ConfigError
        from splendor_flows.engine.freshness import FreshnessError
        from splendor_flows.flows.tenant_status import (
            STATUS_MAX_CONCURRENCY,
            StatusReport,
            api_limit,
            collect,
        )
        from splendor_flows.orchestration.splendor_clients import load_config

        async def look() -> StatusReport:
            config = await load_config(credentials_block)
            name, limit = await api_limit(config.tenant)
            # Within the tenant's API limit without taking its slots: a morning check never waits
            # behind a fleet holding them.
            if limit is not None and limit < 1:
                raise ValueError(
                    f"global concurrency limit '{name}' allows 0 slots, so no call to Splendor may be "
                    f"made: raise it (`prefect gcl update {name} --limit 5`) or disable it"
                )
            bounds = [STATUS_MAX_CONCURRENCY, config.max_concurrency] + ([limit] if limit is not None else [])
            return await collect(config, min(bounds), connectors_file)

        # The client's retry warnings would repeat, line by line, what the one error line says.
        client_log = logging.getLogger("splendor_api")
        level = client_log.level
        client_log.setLevel(logging.ERROR)
        # ValueError: an invalid SPLENDOR_* value; OSError: a file that cannot be read.
        failures: tuple[type[Exception], ...] = (
            *expected_failures(),
            ConfigError,
            FreshnessError,
            ValueError,
            OSError,
        )
        try:
            report = asyncio.run(look())
        except failures as exc:
            fail(str(exc), code=EXIT_FAILED)
        except httpx.HTTPError as exc:
            # The Splendor client turns its own HTTP failures into SplendorError: this one is Prefect's.
            from prefect.settings import PREFECT_API_URL

            where = PREFECT_API_URL.value() or "(the temporary server)"
            fail(f"the Prefect API at {where} did not answer ({type(exc).__name__}: {exc})", code=EXIT_FAILED)
        finally:
            client_log.setLevel(level)
        if as_json:
            typer.echo(json.dumps(report.as_json(), indent=2))
        else:
            _print(report)
        raise typer.Exit(EXIT_ATTENTION if report.attention else EXIT_CLEAR)


def _print(report: "StatusReport") -> None:
    from splendor_flows.flows.tenant_status import table_rows

    rows = table_rows(report)
    table = Table(title=cell(f"{report.headline()} (times in UTC)"), title_justify="left")
    columns = list(rows[0]) if rows else ["source"]
    for column in columns:
        table.add_column(column, no_wrap=column == "source")
    for row in rows:
        table.add_row(*(cell(row[c]) for c in columns))
    console.print(table)
    if report.attention:
        console.print(
            cell(f"ATTENTION: {len(report.attention)} source(s): ")
            + cell(", ".join(r.source_key for r in report.attention)),
            soft_wrap=True,
        )
    else:
        console.print("OK: nothing needs attention", soft_wrap=True)
