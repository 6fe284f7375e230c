"""Serve every deployment of prefect.yaml from one process (`make serve`), without a work pool.

The deployments are built from prefect.yaml itself, so schedules, triggers, parameters and concurrency
limits cannot drift from what `prefect deploy --all` registers. Each flow run executes in a
subprocess of this one; stopping it pauses the schedules but leaves the deployments on the server:
`prefect deployment delete` removes them for good. The upload trigger is not a deployment trigger but an
automation of deployments/automations.yaml: `splendor-flows automations apply` makes it (after serving).

    python -m splendor_flows.deployments.serve [--only after-upload,sync-source] [--limit 4] [--replace]
"""

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectNotFound
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, RRule, Schedule

REPO = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO / "prefect.yaml"


def load_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text())
    specs: list[dict[str, Any]] = document.get("deployments") or []
    return specs


def to_schedule(spec: dict[str, Any]) -> Schedule:
    common: dict[str, Any] = {
        "timezone": spec.get("timezone"),
        "active": spec.get("active", True),
        "parameters": spec.get("parameters") or {},
        "slug": spec.get("slug"),
    }
    if "cron" in spec:
        return Cron(spec["cron"], day_or=spec.get("day_or", True), **common)
    if "interval" in spec:
        anchor = spec.get("anchor_date")
        anchor_date = dt.datetime.fromisoformat(anchor.replace("Z", "+00:00")) if anchor else None
        return Interval(dt.timedelta(seconds=float(spec["interval"])), anchor_date, **common)
    if "rrule" in spec:
        return RRule(spec["rrule"], **common)
    raise ValueError(f"schedule {spec.get('slug') or spec} has none of cron, interval or rrule")


def to_trigger(spec: dict[str, Any]) -> DeploymentEventTrigger:
    fields = {k: v for k, v in spec.items() if k != "type"}
    if spec.get("type", "event") != "event":
        raise ValueError(f"only event triggers are served, not {spec['type']!r}")
    return DeploymentEventTrigger(**fields)


def to_concurrency(value: Any) -> int | ConcurrencyLimitConfig | None:
    if value is None or isinstance(value, int):
        return value
    return ConcurrencyLimitConfig(**value)


def build(spec: dict[str, Any]) -> RunnerDeployment:
    flow: Flow[..., Any] = load_flow_from_entrypoint(spec["entrypoint"])
    # to_deployment is sync-compatible: called outside an event loop it returns the deployment itself.
    deployment = flow.to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        # sync-scheduled has no `schedules` key: re-serving it sends none, and the server keeps the
        # schedule groups `splendor-flows apply` made (they all have slugs; checked by
        # tests/fleet/test_plan_apply_schedules.py).
        schedules=[to_schedule(s) for s in spec.get("schedules") or []],
        triggers=[to_trigger(t) for t in spec.get("triggers") or []],
        concurrency_limit=to_concurrency(spec.get("concurrency_limit")),
        enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
    )
    if not isinstance(deployment, RunnerDeployment):  # only inside a running event loop
        raise RuntimeError("build() must be called outside an event loop")
    return deployment


def build_all(only: set[str] | None = None) -> list[RunnerDeployment]:
    deployments = []
    for spec in load_specs():
        if only and spec["name"] not in only:
            continue
        try:
            deployments.append(build(spec))
        except (ImportError, AttributeError, FileNotFoundError) as exc:
            # One flow that cannot be imported (e.g. a missing optional module) must not stop the rest.
            print(f"skipping {spec['name']}: cannot load {spec['entrypoint']}: {exc}", file=sys.stderr)
    return deployments


async def pool_deployments(deployments: list[RunnerDeployment]) -> list[tuple[str, UUID]]:
    """Deployments of the same name that `prefect deploy` made for a work pool.

    Serving over one of them does not work: the served run would follow the pool deployment's code
    storage and pull steps and crash, and a worker on that pool would race the serve process for runs.
    """
    found = []
    async with get_client() as client:
        for deployment in deployments:
            name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                found.append((name, existing.id))
    return found


async def delete_deployments(ids: list[UUID]) -> None:
    async with get_client() as client:
        for deployment_id in ids:
            # The trigger's automation is owned by the deployment but outlives it: remove it first.
            await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
            await client.delete_deployment(deployment_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated deployment names to serve (default: all)")
    parser.add_argument("--limit", type=int, default=4, help="flow runs executing at once (default 4)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="delete same-named deployments that `prefect deploy` made for a work pool, then serve",
    )
    args = parser.parse_args(argv)
    # Entry points in prefect.yaml are relative to the checkout; so are paths like connectors_file.
    os.chdir(REPO)
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    deployments = build_all(only)
    if not deployments:
        print("nothing to serve", file=sys.stderr)
        return 1
    conflicts = asyncio.run(pool_deployments(deployments))
    if conflicts and not args.replace:
        names = ", ".join(name for name, _ in conflicts)
        print(
            f"{names} already deployed to a work pool (prefect deploy). Serve one way or the other: "
            "re-run with --replace to delete those deployments and serve instead.",
            file=sys.stderr,
        )
        return 2
    if conflicts:
        asyncio.run(delete_deployments([deployment_id for _, deployment_id in conflicts]))
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
