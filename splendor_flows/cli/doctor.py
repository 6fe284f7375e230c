"""`splendor-flows doctor`: does the API the project points at serve every route the flows use, in the
shapes they parse, for this token, tenant and role?

It changes nothing. Reads are called as the flows call them, on the tenant's own objects where it has
some. A write is only sent with ids that name nothing and a body the API must refuse
(`SplendorClient.probe_absent`, whose ids and bodies come from the route table), and the answer tells a
missing route (the router's bare 404, or 405) from one that is there (a handler's 404 detail, or a 422).
A route no call could check safely is listed as unchecked. How each route is probed and which are
required live in `splendor_api/routes.py`; docs/doctor.md explains them.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from splendor_flows.cli.console import CredentialsOption, cell, console, fail

if TYPE_CHECKING:
    from splendor_api import SplendorClient, SplendorConfig, models
    from splendor_api.routes import Route

T = TypeVar("T")

# A check should answer in seconds: a host that does not answer is reported after a few tries, not after
# the pipelines' two minutes of patience.
MAX_ATTEMPTS = 3
MAX_RETRY_SECONDS = 20.0

# Exit codes: a cron job or a CI step can tell "the API lacks something" from "the check did not run".
EXIT_OK = 0
EXIT_FAILS = 1
EXIT_NOT_RUN = 2


class Result(StrEnum):
    OK = "ok"
    NOT_FOUND = "not found"
    SHAPE_DIFFERS = "shape differs"
    UNCHECKED = "unchecked"
    REFUSED = "refused"
    # A probe the API had to refuse was accepted: never expected, always a failure.
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class Check:
    """One line of the report: an identity check (`route` None) or one route."""

    name: str
    result: Result
    # The field a shape differs in, or the status of a refusal.
    detail: str = ""
    # How it was checked and what the API answered.
    how: str = ""
    route: "Route | None" = None

    @property
    def label(self) -> str:
        return f"{self.result}: {self.detail}" if self.detail else str(self.result)

    @property
    def works(self) -> bool:
        return self.result is Result.OK

    @property
    def required(self) -> bool:
        return self.route is None or self.route.required

    @property
    def degrades(self) -> str | None:
        """What stops working, for an optional route that does not work (unchecked ones are unknown)."""
        if self.route is None or self.required or self.works or self.result is Result.UNCHECKED:
            return None
        return self.route.degrades

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "result": str(self.result), "detail": self.detail}
        data["how"] = self.how
        if self.route is not None:
            data |= {
                "method": self.route.method,
                "path": self.route.template,
                "required": self.route.required,
                "tag": self.route.tag.value,
                "shape_tag": self.route.shape_tag.value,
                "probe": self.route.probe.value,
                "degrades": self.degrades,
            }
        return data


@dataclass
class Report:
    api_base: str
    tenant: str
    identity: list[Check] = field(default_factory=list)
    routes: list[Check] = field(default_factory=list)

    @property
    def failing(self) -> list[Check]:
        return [c for c in [*self.identity, *self.routes] if c.required and not c.works]

    @property
    def degraded(self) -> list[Check]:
        return [c for c in self.routes if c.degrades is not None]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILS if self.failing else EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "api_base": self.api_base,
            "tenant": self.tenant,
            "ok": not self.failing,
            "identity": [c.as_json() for c in self.identity],
            "routes": [c.as_json() for c in self.routes],
        }


class NotRun(Exception):
    """The check could not run at all (no answer from the API): exit code 2, one line."""


def _described(detail: object) -> str:
    from splendor_api.errors import describe_detail

    return describe_detail(detail)


def _said(status: int, detail: object) -> str:
    """The gist of a probe's answer: a 422 lists every field it refused, which says nothing more here."""
    if status == 422 and isinstance(detail, list):
        return "(the body was refused)"
    text = _described(detail)
    return repr(text) if len(text) <= 80 else repr(text[:80] + "…")


class _Doctor:
    def __init__(self, client: "SplendorClient") -> None:
        from splendor_api import ROUTES

        self.client = client
        self.routes = ROUTES
        self.checks: dict[str, Check] = {}
        # Set when the tenant holds an object with a probe's absent id: probes then stay unchecked.
        self.clash: str | None = None

    def record(self, name: str, result: Result, detail: str = "", how: str = "") -> None:
        self.checks[name] = Check(name, result, detail, how, self.routes[name])

    async def read(self, name: str, call: Awaitable[T], on: str) -> T | None:
        """Call a read as the flows do; record how it answered; its value when it worked."""
        from splendor_api import ApiError, ResponseInvalid, RetriesExhausted

        try:
            value = await call
        except ResponseInvalid as exc:
            where = ", ".join(exc.fields) or "body"
            self.record(name, Result.SHAPE_DIFFERS, where, f"called on {on}: {exc.reason}")
            return None
        except ApiError as exc:
            answer = f"called on {on}: {exc.status} {_described(exc.detail)}"
            if exc.status in (404, 405):
                self.record(name, Result.NOT_FOUND, how=answer)
            else:
                self.record(name, Result.REFUSED, str(exc.status), answer)
            return None
        except RetriesExhausted as exc:
            last = exc.last_error
            status = str(last.status) if isinstance(last, ApiError) else "no answer"
            self.record(name, Result.REFUSED, status, f"called on {on}: {exc}")
            return None
        self.record(name, Result.OK, how=f"called on {on}; the answer parses")
        return value

    async def probe(self, name: str, why: str = "") -> None:
        """Check a route with ids that name nothing (and the table's refused body)."""
        import httpx

        from splendor_api import Idempotency, routes

        route = self.routes[name]
        if route.probe is routes.Probe.UNCHECKED:
            self.record(name, Result.UNCHECKED, how="no call could be sure to change nothing: not called")
            return
        if self.clash is not None:
            self.record(name, Result.UNCHECKED, how=f"not called: {self.clash}")
            return
        try:
            answer = await self.client.probe_absent(name)
        except httpx.HTTPError as exc:
            self.record(name, Result.REFUSED, "no answer", type(exc).__name__)
            return
        sent = "an id that names nothing" if "{" in route.template else "no id"
        if route.probe_body is not None:
            sent += f" and the body {route.probe_body} it must refuse"
        said = (
            f"{answer.status} {_said(answer.status, answer.detail)}"
            if answer.api_json
            else f"{answer.status}"
        )
        how = f"sent {sent}: {said}" + (f" ({why})" if why else "")
        if answer.route_missing:
            self.record(name, Result.NOT_FOUND, how=how)
        elif answer.refused_safely or (answer.status < 300 and route.idempotency is Idempotency.READ):
            # A read that answers an absent id shows the route is there just as well as a refusal.
            self.record(name, Result.OK, how=how + "; the answer's shape is not checked this way")
        elif answer.status < 300:
            self.record(name, Result.ACCEPTED, str(answer.status), how)
        else:
            self.record(name, Result.REFUSED, str(answer.status), how)

    async def identity(self) -> list[Check]:
        """Token, tenant and admin role, from GET /v1/me as the pipelines' preflight reads it."""
        from splendor_api import (
            ApiError,
            ConfigError,
            Forbidden,
            NotTenantAdmin,
            ResponseInvalid,
            RetriesExhausted,
            Unauthorized,
        )

        def unchecked(*names: str, why: str) -> list[Check]:
            return [Check(n, Result.UNCHECKED, how=why) for n in names]

        tenant = self.client.config.effective_tenant_id or "?"
        try:
            access = await self.client.preflight()
        except RetriesExhausted as exc:
            if not isinstance(exc.last_error, ApiError):
                raise NotRun(f"no answer from {self.client.config.api_base}: {exc}") from None
            self.record("me", Result.REFUSED, str(exc.last_error.status), str(exc))
            return unchecked("token", "tenant", "admin role", why="GET /v1/me did not answer")
        except Unauthorized as exc:
            self.record("me", Result.REFUSED, "401", _described(exc.detail))
            return [
                Check("token", Result.REFUSED, "401", "GET /v1/me refused the token"),
                *unchecked("tenant", "admin role", why="the token was refused"),
            ]
        except ResponseInvalid as exc:
            self.record("me", Result.SHAPE_DIFFERS, ", ".join(exc.fields) or "body", exc.reason)
            return [
                Check("token", Result.OK, how="GET /v1/me answered"),
                *unchecked("tenant", "admin role", why="GET /v1/me answered in another shape"),
            ]
        except NotTenantAdmin as exc:
            self.record("me", Result.OK, how="the answer parses")
            return [
                Check("token", Result.OK, how="GET /v1/me answered"),
                Check("tenant", Result.OK, how=f"the token reaches tenant {tenant}"),
                Check("admin role", Result.REFUSED, "not admin", str(exc)),
            ]
        except (Forbidden, ConfigError) as exc:
            self.record("me", Result.OK, how="the answer parses")
            return [
                Check("token", Result.OK, how="GET /v1/me answered"),
                Check("tenant", Result.REFUSED, "no access", str(exc)),
                *unchecked("admin role", why="the token does not reach the tenant"),
            ]
        except ApiError as exc:
            self.record("me", Result.REFUSED, str(exc.status), _described(exc.detail))
            return unchecked("token", "tenant", "admin role", why="GET /v1/me was refused")
        self.record("me", Result.OK, how="the answer parses")
        role = ", ".join(
            f"{k} {v}" for k, v in (("role", access.role), ("plan", access.plan)) if v is not None
        )
        kind = "tenant API key" if self.client.config.is_tenant_api_key else "user token"
        return [
            Check("token", Result.OK, how=f"{kind}, accepted by GET /v1/me"),
            Check("tenant", Result.OK, how=f"the token reaches tenant {access.tenant_id}"),
            Check("admin role", Result.OK, how=f"is_admin true{f' ({role})' if role else ''}"),
        ]

    def absent_ids_clash(self, sources: "list[models.Source]") -> str | None:
        from splendor_api.probe import ABSENT_PATH_VALUES

        ids = {s.source_id for s in sources}
        keys = {s.source_key for s in sources}
        if ABSENT_PATH_VALUES["source_id"] in ids or ABSENT_PATH_VALUES["source_key"] in keys:
            return "the tenant has a source with the probe's id or key"
        return None

    async def run(self) -> tuple[list[Check], list[Check]]:
        from splendor_api.models import RUN_TERMINAL

        client = self.client
        identity = await self.identity()
        if identity[0].result is not Result.OK:
            for name in self.routes:
                if name not in self.checks:
                    self.record(name, Result.UNCHECKED, how="not called: the token does not work")
            return identity, self._in_table_order()

        sources = await self.read("list_sources", client.list_sources(), "the tenant")
        if sources is not None:
            self.clash = self.absent_ids_clash(sources)

        providers = await self.read("list_providers", client.list_providers(), "the tenant")
        if providers:
            key = providers[0].provider_key
            await self.read("discover_provider", client.discover_provider(key), f"provider {key}")

        definitions = await self.read("search_catalog", client.search_catalog(), "the whole catalog")
        if definitions:
            definition = definitions[0].source_definition_id
            await self.read(
                "discover_catalog_definition",
                client.discover_catalog_definition(definition),
                f"definition {definition}",
            )

        connector = next((s for s in sources or [] if s.connector_id is not None), None)
        runs: list[models.ConnectorRun] | None = None
        ingest: list[models.IngestRun] | None = None
        if connector is not None:
            sid = connector.source_id
            on = f"source {sid}"
            state = await self.read("get_airbyte_source", client.get_airbyte_source(sid), on)
            if state is not None and state.airbyte.credentials_ready:
                await self.read("discover_schema", client.discover_schema(sid), on)
            runs = await self.read("list_runs", client.list_runs(sid), on)
            ingest = await self.read("list_ingest_runs", client.list_ingest_runs(source_id=sid), on)
        else:
            ingest = await self.read("list_ingest_runs", client.list_ingest_runs(), "the tenant")

        # A finished run to read: from the runs list, else one handed to ingestion (those succeeded).
        finished = next((r.run_id for r in runs or [] if r.status in RUN_TERMINAL), None)
        if finished is None:
            finished = next((i.connector_run_id for i in ingest or [] if i.connector_run_id), None)
        if finished is not None:
            run = await self.read("get_run", client.get_run(finished), f"run {finished}")
            # Refreshing re-reads the run from Airbyte; a finished run has nothing left to move.
            if run is None or run.status in RUN_TERMINAL:
                await self.read("refresh_run", client.refresh_run(finished), f"finished run {finished}")
        if ingest:
            iid = ingest[0].ingest_run_id
            await self.read("get_ingest_run", client.get_ingest_run(iid), f"ingest run {iid}")

        for name in self.routes:
            if name not in self.checks:
                await self.probe(name, why=self._why_absent(name, connector is not None))
        return identity, self._in_table_order()

    def _why_absent(self, name: str, has_connector: bool) -> str:
        """Why a read was probed with an absent id rather than called on a real object."""
        from splendor_api.routes import Probe

        route = self.routes[name]
        if route.probe is not Probe.CALL or "{" not in route.template:
            return ""
        if not has_connector and name in ("get_airbyte_source", "discover_schema", "list_runs"):
            return "the tenant has no connector source to read"
        if name == "discover_schema":
            return "no connector source has ready credentials"
        if name in ("get_run", "refresh_run"):
            return "no finished run was found to read"
        return "the tenant has no such object to read"

    def _in_table_order(self) -> list[Check]:
        return [self.checks[name] for name in self.routes]


async def examine(config: "SplendorConfig") -> Report:
    """Check the API against the route table for this configuration; raises NotRun when it cannot."""
    from splendor_api import SplendorClient

    tuned = config.with_tuning(
        {
            "max_attempts": min(config.max_attempts, MAX_ATTEMPTS),
            "max_retry_seconds": min(config.max_retry_seconds, MAX_RETRY_SECONDS),
        }
    )
    async with SplendorClient(tuned) as client:
        identity, routes = await _Doctor(client).run()
    return Report(
        api_base=config.api_base, tenant=config.effective_tenant_id or "?", identity=identity, routes=routes
    )


def _print(report: Report) -> None:
    console.print(f"Splendor API at {cell(report.api_base)}, tenant {cell(report.tenant)}", soft_wrap=True)
    who = Table(show_header=False, title_justify="left")
    for column in ("check", "result", "how"):
        who.add_column(column)
    for check in report.identity:
        who.add_row(cell(check.name), cell(check.label), cell(check.how))
    console.print(who)
    table = Table(title="Routes the flows use", title_justify="left")
    for column in ("method", "path", "need", "result", "how"):
        table.add_column(column, no_wrap=column in ("method", "path"))
    for check in report.routes:
        assert check.route is not None
        need = "required" if check.route.required else "optional"
        table.add_row(
            *(cell(v) for v in (check.route.method, check.route.template, need, check.label, check.how))
        )
    console.print(table)
    for check in report.degraded:
        assert check.route is not None
        line = f"degraded: without {check.route.method} {check.route.template}, {check.route.degrades}"
        console.print(cell(line), soft_wrap=True)
    if report.failing:
        names = ", ".join(
            f"{c.route.method} {c.route.template} ({c.label})" if c.route else f"{c.name} ({c.label})"
            for c in report.failing
        )
        console.print(
            cell(f"FAIL: {len(report.failing)} required check(s) do not pass: {names}"), soft_wrap=True
        )
    else:
        console.print("OK: every required route works", soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the report as JSON for scripts.")
        ] = False,
        credentials_block: CredentialsOption = None,
    ) -> None:
        """Check the token, tenant, admin role and every route the flows use, changing nothing.

        Exit code 0 when every required route works, 1 when one does not, 2 when the check could not run.
        """
        from splendor_api import ConfigError, SplendorConfig

        # The client's retry warnings would repeat, line by line, what the report says once.
        client_log = logging.getLogger("splendor_api")
        level = client_log.level
        client_log.setLevel(logging.ERROR)
        try:
            if credentials_block:
                from splendor_flows.orchestration.splendor_clients import load_config

                config = asyncio.run(load_config(credentials_block))
            else:
                # The variables need no Prefect: the check runs no flow, and skipping the import
                # makes it start in a second rather than five.
                config = SplendorConfig.from_env()
            report = asyncio.run(examine(config))
        except (ConfigError, ValueError, NotRun) as exc:  # ValueError: an invalid SPLENDOR_* value
            fail(str(exc), code=EXIT_NOT_RUN)
        finally:
            client_log.setLevel(level)
        if as_json:
            typer.echo(json.dumps(report.as_json(), indent=2))
        else:
            _print(report)
        raise typer.Exit(report.exit_code)
