"""The automations of deployments/automations.yaml, created or updated by name on any Prefect server.

Two kinds. The safety automations (zombie detection, the resume of crashed runs, failing a wait nobody
answers) hold guarantees the pipelines rely on and are always applied. The notification automations post
to the webhook block `custom-webhook/splendor-notify`: they are applied when a webhook is configured (a URL
given, which creates or re-points the block, or the block already on the server, perhaps set up in the UI)
and skipped, with the reason, otherwise.

An action may name its block as `block_document: <block type slug>/<block name>`, and the deployment it
runs as `deployment: <flow name>/<deployment name>`; each is resolved to the id Prefect wants
(`block_document_id`, `deployment_id`) here, so the file holds names that mean the same on every server.
The freshness automation publishes `splendor.source.stale` through a second block, the server's own events
endpoint (`webhook/splendor-prefect-events`), which is always kept in step.

The upload trigger (`splendor-upload-completed`, which runs the after-upload deployment) is one of these
automations rather than a `triggers:` entry of prefect.yaml: `prefect deploy` deletes and re-creates a
deployment's triggers on every deploy, so a second deploy would change it. A deployment an automation
runs must exist before apply: apply refuses, naming it, rather than leave the trigger out.

Everything is compared before it is written: an automation whose content already matches, or a block whose
data does, is left as it is, so a second apply changes nothing, and `plan` says what apply would do
without writing. Secrets (the webhook URL, which is a bearer credential for Slack and most receivers, and
the server's auth header) live only in the blocks' secret fields, and no error carries a server's answer,
which may echo a request's headers.

Zombie detection only works when flow runs send heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, which
prefect.yaml sets in the work pool's job variables): apply reads the deployments and their pools and
warns about every deployment whose runs would not send them.
"""

import base64
import copy
import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import yaml
from pydantic import ValidationError

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# Prefect's minimum heartbeat frequency, and the slack a zombie window needs over it so that one late
# heartbeat of a healthy run does not get it marked Crashed.
MIN_HEARTBEAT_SECONDS = 30
HEARTBEAT_SLACK_SECONDS = 10
NOTIFY_BLOCK = "custom-webhook/splendor-notify"
EVENTS_BLOCK = "webhook/splendor-prefect-events"
NOTIFY_URL_ENV = "SPLENDOR_NOTIFY_URL"
# The webhook URL's key in the notification block's secret values; the block's `url` is this placeholder.
NOTIFY_URL_SECRET = "notify_url"
PROJECT_TAG = "splendor"
RETRY_503_SECONDS = 30.0


class AutomationsError(RuntimeError):
    """An apply that could not finish: says what failed and the HTTP status, never the server's answer."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"
    DELETE = "delete"


@dataclass(frozen=True)
class Change:
    kind: str  # "block" or "automation"
    name: str
    action: Action
    detail: str = ""


@dataclass
class Applied:
    """What an apply did, or with `plan` what it would do (then nothing was written)."""

    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # automation name -> id (existing ones, when planned)

    @property
    def skipped(self) -> dict[str, str]:
        return {c.name: c.detail for c in self.changes if c.action is Action.SKIP}

    @property
    def changed(self) -> bool:
        return any(c.action in (Action.CREATE, Action.UPDATE, Action.DELETE) for c in self.changes)

    def totals(self) -> str:
        counts = {action: sum(1 for c in self.changes if c.action is action) for action in Action}
        return ", ".join(f"{n} {action}" for action, n in counts.items() if n) or "nothing"


# --- the file ------------------------------------------------------------------------------------------


def load(text: str | None = None) -> list[dict[str, Any]]:
    """The automations of the installed deployments/automations.yaml (or of `text`)."""
    if text is None:
        text = files("splendor_flows.deployments").joinpath("automations.yaml").read_text()
    data = yaml.safe_load(text)
    automations = data.get("automations") if isinstance(data, dict) else data
    if not isinstance(automations, list) or not all(isinstance(a, dict) for a in automations):
        raise ValueError("automations file: expected `automations:` with a list of automations")
    return automations


def is_zombie_detector(automation: dict[str, Any]) -> bool:
    trigger = automation.get("trigger", {})
    return bool(trigger.get("posture") == "Proactive" and HEARTBEAT_EVENT in trigger.get("after", []))


def with_zombie_window(automations: list[dict[str, Any]], within_seconds: float) -> list[dict[str, Any]]:
    """A copy where the heartbeat-based detection fires after `within_seconds` (tests shorten it)."""
    names = [a["name"] for a in automations if is_zombie_detector(a)]
    return with_windows(automations, dict.fromkeys(names, within_seconds))


def with_windows(automations: list[dict[str, Any]], windows: dict[str, float]) -> list[dict[str, Any]]:
    """A copy where the automation of each name waits `within` that many seconds (an OAuth wait worth a
    notification, a freshness window, ...): how an operator or a test changes a threshold without
    editing the rest. An unknown name is an error, so a renamed automation cannot be missed silently."""
    result = copy.deepcopy(automations)
    unknown = set(windows) - {a["name"] for a in result}
    if unknown:
        raise ValueError(f"no automation named {', '.join(sorted(unknown))}")
    for automation in result:
        if automation["name"] in windows:
            automation["trigger"]["within"] = windows[automation["name"]]
    return result


def parse_windows(values: list[str]) -> dict[str, float]:
    """`NAME=SECONDS` pairs, as the command line gives them."""
    windows: dict[str, float] = {}
    for value in values:
        name, sep, seconds = value.partition("=")
        try:
            windows[name] = float(seconds)
        except ValueError:
            sep = ""
        if not sep or not name or windows[name] < 0:
            raise ValueError(f"--within {value!r}: expected NAME=SECONDS with SECONDS a number >= 0")
    return windows


def blocks_named(automations: list[dict[str, Any]]) -> set[str]:
    """The `<type>/<name>` blocks the actions refer to."""
    return {a["block_document"] for auto in automations for a in auto["actions"] if "block_document" in a}


def deployments_named(automations: list[dict[str, Any]]) -> set[str]:
    """The `<flow>/<deployment>` deployments the actions run."""
    return {a["deployment"] for auto in automations for a in auto["actions"] if "deployment" in a}


def with_ids(
    automation: dict[str, Any], block_ids: dict[str, str], deployment_ids: dict[str, str]
) -> dict[str, Any]:
    """The automation as Prefect takes it: each `block_document` and `deployment` name replaced by its id."""
    result = copy.deepcopy(automation)
    for action in result["actions"]:
        if "block_document" in action:
            action["block_document_id"] = block_ids[action.pop("block_document")]
        if "deployment" in action:
            action["deployment_id"] = deployment_ids[action.pop("deployment")]
    return result


def zombie_window(automations: list[dict[str, Any]]) -> float | None:
    for automation in automations:
        if is_zombie_detector(automation):
            return float(automation["trigger"]["within"])
    return None


def check_notify_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The URL itself is a secret: name the field and what is allowed, not the value.
        raise ValueError(
            "--notify-url (or SPLENDOR_NOTIFY_URL) must be an http:// or https:// URL with a host"
        )
    return url


# --- the blocks ----------------------------------------------------------------------------------------


def notify_webhook(url: str) -> dict[str, Any]:
    """The notification block: a JSON POST of the subject and body to `url`.

    The URL sits in the block's secret values (stored encrypted, shown masked) and the plain `url` field
    holds only the placeholder the block substitutes when it sends.
    """
    return {
        "name": "splendor-notify",
        "url": "{{" + NOTIFY_URL_SECRET + "}}",
        "method": "POST",
        "json_data": {"subject": "{{subject}}", "body": "{{body}}"},
        "allow_private_urls": True,
        "secrets": {NOTIFY_URL_SECRET: url},
    }


def events_webhook(api_url: str, auth_string: str | None) -> dict[str, Any]:
    """The server's own events endpoint, so an automation can publish an event."""
    headers = {"Content-Type": "application/json"}
    if auth_string:
        # The server's basic auth (PREFECT_SERVER_API_AUTH_STRING); `headers` is a secret field.
        headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
    return {
        "url": f"{api_url.rstrip('/')}/events",
        "method": "POST",
        "headers": headers,
        "allow_private_urls": True,
    }


# --- comparing -----------------------------------------------------------------------------------------


def _normal_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    """The trigger without the id the server gives every trigger (and every trigger of a compound one),
    its string lists sorted: `expect`, `after` and `for_each` are sets, which serialise in any order,
    and a resource's list of accepted values matches the same in any order."""
    normal: dict[str, Any] = {}
    for key, value in trigger.items():
        if key == "id":
            continue
        if key == "triggers":
            normal[key] = [_normal_trigger(child) for child in value]
        elif isinstance(value, dict):
            normal[key] = _normal_trigger(value)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            normal[key] = sorted(value)
        else:
            normal[key] = value
    return normal


def comparable(automation: dict[str, Any]) -> dict[str, Any]:
    """An automation as Prefect reads it, defaults filled in and server-made ids left out: the file's
    version and the server's one are equal exactly when applying would change nothing."""
    from prefect.events.schemas.automations import AutomationCore

    data = AutomationCore.model_validate(automation).model_dump(mode="json")
    data["trigger"] = _normal_trigger(data["trigger"])
    return data


def validate(automations: list[dict[str, Any]]) -> None:
    """Fail on the first automation Prefect would refuse, naming it and the field, before any write."""
    from prefect.events.schemas.automations import AutomationCore

    placeholder = "00000000-0000-0000-0000-000000000000"
    for automation in automations:
        name = automation.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("an automation without a name: field name is required (a non-empty string)")
        if not isinstance(automation.get("actions"), list):
            raise ValueError(f"automation {name}: field actions is required (a list of actions)")
        for ref in deployments_named([automation]):
            flow, _, deployment = str(ref).partition("/")
            if not flow or not deployment or "/" in deployment:
                raise ValueError(
                    f"automation {name}: field actions.deployment: {ref!r} is not "
                    "<flow name>/<deployment name> (e.g. after-upload/after-upload)"
                )
        try:
            AutomationCore.model_validate(
                with_ids(
                    automation,
                    dict.fromkeys(blocks_named([automation]), placeholder),
                    dict.fromkeys(deployments_named([automation]), placeholder),
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"automation {name}: field {where}: {first['msg']}") from None


def _differing_fields(wanted: dict[str, Any], found: dict[str, Any]) -> str:
    return ", ".join(key for key in wanted if wanted.get(key) != found.get(key))


# --- the server ----------------------------------------------------------------------------------------


class _Server:
    def __init__(self, api_url: str, auth_string: str | None, api_key: str | None) -> None:
        headers = {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        elif auth_string:
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        self.api_url = api_url.rstrip("/")
        self.client = httpx.Client(base_url=self.api_url, timeout=30, headers=headers)

    def close(self) -> None:
        self.client.close()

    def request(self, what: str, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        """The response, retried while the server answers 503 (busy); any other failure raises with
        `what` and the status only: a server's answer can echo the request, auth header included."""
        deadline = time.monotonic() + RETRY_503_SECONDS
        while True:
            try:
                response = self.client.request(method, path, json=body, params=params or None)
            except httpx.HTTPError as exc:
                raise AutomationsError(
                    f"{what}: the Prefect API at {self.api_url} did not answer ({type(exc).__name__})"
                ) from None
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(response.headers.get("Retry-After", "1") or 1))
        if response.status_code == 401:
            raise AutomationsError(
                f"{what}: {method} {path} failed with HTTP 401: the server requires credentials; set "
                "PREFECT_API_AUTH_STRING (or PREFECT_API_KEY) to what it expects"
            )
        if response.status_code >= 400 and response.status_code != 404:
            raise AutomationsError(f"{what}: {method} {path} failed with HTTP {response.status_code}")
        return response

    def json(self, what: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.request(what, method, path, body, **params)
        if response.status_code == 404:
            raise AutomationsError(f"{what}: {method} {path} failed with HTTP 404")
        return response.json() if response.content else None

    def read_block(self, ref: str) -> dict[str, Any] | None:
        """The block `<type slug>/<name>` with its secret values, or None."""
        slug, _, name = ref.partition("/")
        response = self.request(
            f"reading block {ref}",
            "GET",
            f"/block_types/slug/{slug}/block_documents/name/{name}",
            include_secrets="true",
        )
        if response.status_code == 404:
            return None
        found: dict[str, Any] = response.json()
        return found

    def create_block(self, ref: str, data: dict[str, Any]) -> str:
        slug, _, name = ref.partition("/")
        what = f"creating block {ref}"
        block_type = self.json(what, "GET", f"/block_types/slug/{slug}")
        schemas = self.json(
            what,
            "POST",
            "/block_schemas/filter",
            {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}, "limit": 1},
        )
        if not schemas:
            raise AutomationsError(f"{what}: the server has no schema for block type {slug!r}")
        body = {
            "name": name,
            "data": data,
            "block_type_id": block_type["id"],
            "block_schema_id": schemas[0]["id"],
        }
        return str(self.json(what, "POST", "/block_documents/", body)["id"])

    def update_block(self, ref: str, block_id: str, data: dict[str, Any]) -> None:
        self.json(
            f"updating block {ref}",
            "PATCH",
            f"/block_documents/{block_id}",
            {"data": data, "merge_existing_data": False},
        )

    def deployment_id(self, ref: str) -> str | None:
        """The id of the deployment `<flow name>/<deployment name>`, or None."""
        flow, _, deployment = ref.partition("/")
        path = f"/deployments/name/{quote(flow, safe='')}/{quote(deployment, safe='')}"
        response = self.request(f"reading deployment {ref}", "GET", path)
        return None if response.status_code == 404 else str(response.json()["id"])

    def automations_named(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.json(
            f"reading automation {name}",
            "POST",
            "/automations/filter",
            {"automations": {"name": {"any_": [name]}}},
        )
        return sorted(found, key=lambda a: str(a.get("created") or ""))


# --- plan and apply ------------------------------------------------------------------------------------


@dataclass
class _BlockStep:
    ref: str
    action: Action
    data: dict[str, Any] | None
    block_id: str | None
    detail: str = ""


@dataclass
class _AutomationStep:
    automation: dict[str, Any]
    action: Action
    detail: str
    automation_id: str | None
    duplicates: list[str]


def _plan_blocks(
    server: _Server, automations: list[dict[str, Any]], notify_url: str | None, auth_string: str | None
) -> tuple[list[_BlockStep], dict[str, str]]:
    """What each block needs, and the ids of the blocks the automations may refer to (existing ones)."""
    wanted = blocks_named(automations)
    desired: dict[str, dict[str, Any]] = {}
    if EVENTS_BLOCK in wanted:
        desired[EVENTS_BLOCK] = events_webhook(server.api_url, auth_string)
    if NOTIFY_BLOCK in wanted and notify_url:
        desired[NOTIFY_BLOCK] = notify_webhook(notify_url)
    steps: list[_BlockStep] = []
    ids: dict[str, str] = {}
    for ref in sorted(wanted):
        found = server.read_block(ref)
        if found is not None:
            ids[ref] = str(found["id"])
        if ref not in desired:
            if found is not None:
                steps.append(
                    _BlockStep(ref, Action.UNCHANGED, None, ids[ref], "kept as it is (no URL given)")
                )
            continue
        if found is None:
            action = Action.CREATE
        else:
            action = Action.UNCHANGED if found.get("data") == desired[ref] else Action.UPDATE
        steps.append(_BlockStep(ref, action, desired[ref], ids.get(ref)))
    return steps, ids


def _deployment_ids(server: _Server, automations: list[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    """The ids of the deployments the automations run, and the names of those the server does not have."""
    ids: dict[str, str] = {}
    for ref in sorted(deployments_named(automations)):
        found = server.deployment_id(ref)
        if found is not None:
            ids[ref] = found
    return ids, deployments_named(automations) - set(ids)


def _missing_deployments_error(server: _Server, automations: list[dict[str, Any]], missing: set[str]) -> str:
    needing = sorted(a["name"] for a in automations if deployments_named([a]) & missing)
    return (
        f"{', '.join(needing)} runs the deployment {', '.join(sorted(missing))}, which the Prefect server at "
        f"{server.api_url} does not have: run `prefect deploy --all` (or `make deploy`) first, then apply "
        "again"
    )


def _plan_automations(
    server: _Server,
    automations: list[dict[str, Any]],
    block_ids: dict[str, str],
    new_blocks: set[str],
    deployment_ids: dict[str, str],
) -> list[_AutomationStep]:
    steps: list[_AutomationStep] = []
    for automation in automations:
        name = automation["name"]
        needed = blocks_named([automation])
        missing = needed - set(block_ids) - new_blocks
        found = server.automations_named(name)
        keep, duplicates = (found[0], [str(d["id"]) for d in found[1:]]) if found else (None, [])
        keep_id = str(keep["id"]) if keep is not None else None
        absent = deployments_named([automation]) - set(deployment_ids)
        if absent:
            # Only a plan gets here (apply refuses first): say what deploying would let it do.
            detail = f"no deployment {', '.join(sorted(absent))}: run `prefect deploy --all` first"
            steps.append(_AutomationStep(automation, Action.SKIP, detail, keep_id, []))
            continue
        if missing:
            detail = f"no block {', '.join(sorted(missing))}"
            if NOTIFY_BLOCK in missing:
                detail += f": no webhook configured (--notify-url or ${NOTIFY_URL_ENV})"
            steps.append(_AutomationStep(automation, Action.SKIP, detail, keep_id, []))
            continue
        if keep is None:
            steps.append(_AutomationStep(automation, Action.CREATE, "", None, []))
            continue
        if needed & new_blocks:
            # It will point at a block that does not exist yet.
            steps.append(_AutomationStep(automation, Action.UPDATE, "actions", keep_id, duplicates))
            continue
        wanted = comparable(with_ids(automation, block_ids, deployment_ids))
        current = comparable(keep)
        action = Action.UNCHANGED if wanted == current else Action.UPDATE
        steps.append(
            _AutomationStep(automation, action, _differing_fields(wanted, current), keep_id, duplicates)
        )
    return steps


def _heartbeat_warnings(server: _Server, automations: list[dict[str, Any]]) -> list[str]:
    """Why zombie detection would not see some runs of this project's deployments, if it would not."""
    window = zombie_window(automations)
    if window is None:
        return []
    what = "checking the deployments' heartbeat setting"
    deployments: list[dict[str, Any]] = server.json(
        what, "POST", "/deployments/filter", {"deployments": {"tags": {"all_": [PROJECT_TAG]}}, "limit": 200}
    )
    if not deployments:
        return [
            f"zombie detection is applied but no deployment tagged `{PROJECT_TAG}` exists yet: deploy "
            f"(prefect deploy --all) and apply again to check that their runs send heartbeats"
        ]
    pool_env: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    unchecked: list[str] = []
    too_slow: list[str] = []
    for deployment in sorted(deployments, key=lambda d: str(d["name"])):
        pool = deployment.get("work_pool_name")
        if not pool:
            unchecked.append(deployment["name"])
            continue
        if pool not in pool_env:
            found = server.json(what, "GET", f"/work_pools/{pool}")
            variables = (found.get("base_job_template") or {}).get("variables") or {}
            pool_env[pool] = ((variables.get("properties") or {}).get("env") or {}).get("default") or {}
        env = pool_env[pool] | ((deployment.get("job_variables") or {}).get("env") or {})
        value = env.get(HEARTBEAT_SETTING)
        if value in (None, ""):
            missing.append(deployment["name"])
        elif (
            not str(value).isdigit()
            or not MIN_HEARTBEAT_SECONDS <= int(value) <= window - HEARTBEAT_SLACK_SECONDS
        ):
            too_slow.append(f"{deployment['name']} ({value})")
    warnings = []
    if missing:
        warnings.append(
            f"zombie detection needs flow-run heartbeats, and the runs of {', '.join(missing)} send none: "
            f"no {HEARTBEAT_SETTING} in their job variables' env nor their pool's. Put it in the work pool's "
            "job_variables.env in prefect.yaml (as this project's does) and deploy again, or set it on every "
            "worker of a process pool; until then a dead worker's runs stay Running for good"
        )
    if too_slow:
        warnings.append(
            f"{HEARTBEAT_SETTING} must be a whole number of seconds from {MIN_HEARTBEAT_SECONDS} to "
            f"{window - HEARTBEAT_SLACK_SECONDS} for the zombie window of {window:.0f} s; it is not for "
            f"{', '.join(too_slow)}"
        )
    if unchecked:
        warnings.append(
            f"{', '.join(unchecked)} run without a work pool (served): zombie detection sees them only if "
            f"the serving process sets {HEARTBEAT_SETTING}"
        )
    return warnings


def _run(
    api_url: str,
    automations: list[dict[str, Any]],
    *,
    write: bool,
    notify_url: str | None,
    auth_string: str | None,
    api_key: str | None,
) -> Applied:
    notify_url = notify_url or os.environ.get(NOTIFY_URL_ENV) or None
    if notify_url:
        check_notify_url(notify_url)
    validate(automations)
    server = _Server(api_url, auth_string, api_key)
    try:
        deployment_ids, absent = _deployment_ids(server, automations)
        if absent and write:
            # Before any write: an apply without the upload trigger would look done and never start a run.
            raise AutomationsError(_missing_deployments_error(server, automations, absent))
        block_steps, block_ids = _plan_blocks(server, automations, notify_url, auth_string)
        new_blocks = {s.ref for s in block_steps if s.action is Action.CREATE}
        steps = _plan_automations(server, automations, block_ids, new_blocks, deployment_ids)
        result = Applied(
            warnings=_heartbeat_warnings(server, [s.automation for s in steps if s.action is not Action.SKIP])
        )
        if absent:
            result.warnings.append(_missing_deployments_error(server, automations, absent))
        for block in block_steps:
            result.changes.append(Change("block", block.ref, block.action, block.detail))
            if not write or block.data is None:
                continue
            if block.action is Action.CREATE:
                block_ids[block.ref] = server.create_block(block.ref, block.data)
            elif block.action is Action.UPDATE and block.block_id is not None:
                server.update_block(block.ref, block.block_id, block.data)
        for step in steps:
            name = step.automation["name"]
            result.changes.append(Change("automation", name, step.action, step.detail))
            result.changes.extend(
                Change("automation", name, Action.DELETE, f"duplicate {d}") for d in step.duplicates
            )
            if step.automation_id is not None:
                result.ids[name] = step.automation_id
            if not write or (step.action in (Action.SKIP, Action.UNCHANGED) and not step.duplicates):
                continue
            body = with_ids(step.automation, block_ids, deployment_ids)
            if step.action is Action.CREATE:
                created = server.json(f"creating automation {name}", "POST", "/automations/", body)
                result.ids[name] = str(created["id"])
            elif step.action is Action.UPDATE:
                server.json(f"updating automation {name}", "PUT", f"/automations/{step.automation_id}", body)
            # Earlier manual `prefect automation create` runs may have left copies: one is enough.
            for duplicate in step.duplicates:
                server.json(
                    f"deleting a duplicate of automation {name}", "DELETE", f"/automations/{duplicate}"
                )
        return result
    finally:
        server.close()


def plan(
    api_url: str,
    automations: list[dict[str, Any]],
    *,
    notify_url: str | None = None,
    auth_string: str | None = None,
    api_key: str | None = None,
) -> Applied:
    """What apply would create, update, leave and skip; writes nothing."""
    return _run(
        api_url, automations, write=False, notify_url=notify_url, auth_string=auth_string, api_key=api_key
    )


def apply(
    api_url: str,
    automations: list[dict[str, Any]],
    *,
    notify_url: str | None = None,
    auth_string: str | None = None,
    api_key: str | None = None,
) -> Applied:
    """Create each automation, or update the one of the same name in place when it differs.

    `notify_url` (else $SPLENDOR_NOTIFY_URL) creates or re-points the notification webhook; without it an
    existing block (perhaps pointed at Slack in the UI) is kept as it is, and without either the
    notification automations are skipped.
    """
    return _run(
        api_url, automations, write=True, notify_url=notify_url, auth_string=auth_string, api_key=api_key
    )
