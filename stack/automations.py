"""Create or update the automations of deployments/automations.yaml on a Prefect server, by name.

An action may name its block as `block_document: <block type slug>/<block name>`; it is resolved to the
`block_document_id` Prefect wants here, so the file holds names that mean the same on every server. Two
blocks are created or updated on the way: the notification webhook (`custom-webhook/splendor-notify`,
when a URL for it is given) and the server's own events endpoint (`webhook/splendor-prefect-events`),
through which the freshness automation publishes `splendor.source.stale`. An automation whose block
does not exist is skipped and reported, not half-created.

Plain REST (the server validates the bodies), so the stack does not import Prefect. Also a command:

    python -m stack.automations --api-url http://127.0.0.1:4200/api [--notify-url https://...]
"""

import argparse
import base64
import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
AUTOMATIONS_FILE = REPO / "deployments" / "automations.yaml"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
NOTIFY_BLOCK = "custom-webhook/splendor-notify"
EVENTS_BLOCK = "webhook/splendor-prefect-events"
NOTIFY_URL_ENV = "SPLENDOR_NOTIFY_URL"


def load(path: Path = AUTOMATIONS_FILE) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    automations = data["automations"] if isinstance(data, dict) else data
    if not isinstance(automations, list) or not all(isinstance(a, dict) for a in automations):
        raise ValueError(f"{path}: expected `automations:` with a list of automations")
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


def blocks_named(automations: list[dict[str, Any]]) -> set[str]:
    """The `<type>/<name>` blocks the actions refer to."""
    return {a["block_document"] for auto in automations for a in auto["actions"] if "block_document" in a}


def with_block_ids(automation: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The automation as Prefect takes it: each `block_document` name replaced by its id."""
    result = copy.deepcopy(automation)
    for action in result["actions"]:
        if "block_document" in action:
            action["block_document_id"] = ids[action.pop("block_document")]
    return result


def zombie_window(automations: list[dict[str, Any]]) -> float | None:
    for automation in automations:
        if is_zombie_detector(automation):
            return float(automation["trigger"]["within"])
    return None


def _request(client: httpx.Client, method: str, path: str, body: Any = None) -> Any:
    # A busy server answers 503 + Retry-After (Prefect's own client retries those too).
    deadline = time.monotonic() + 30
    while True:
        response = client.request(method, path, json=body)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(float(response.headers.get("Retry-After", "1") or 1))
    if response.status_code >= 400:
        raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
    return response.json() if response.content else None


def _block_type_and_schema(client: httpx.Client, slug: str) -> tuple[str, str]:
    block_type = _request(client, "GET", f"/block_types/slug/{slug}")
    schemas = _request(
        client,
        "POST",
        "/block_schemas/filter",
        {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}, "limit": 1},
    )
    if not schemas:
        raise RuntimeError(f"the server has no schema for block type {slug!r}")
    return str(block_type["id"]), str(schemas[0]["id"])


def _find_block(client: httpx.Client, ref: str) -> str | None:
    slug, _, name = ref.partition("/")
    response = client.get(f"/block_types/slug/{slug}/block_documents/name/{name}")
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise RuntimeError(f"GET block {ref}: HTTP {response.status_code}: {response.text}")
    return str(response.json()["id"])


def put_block(client: httpx.Client, ref: str, data: dict[str, Any]) -> str:
    """Create the block `<type slug>/<name>` with `data`, or replace the data of the existing one."""
    found = _find_block(client, ref)
    if found is not None:
        _request(client, "PATCH", f"/block_documents/{found}", {"data": data, "merge_existing_data": False})
        return found
    slug, _, name = ref.partition("/")
    type_id, schema_id = _block_type_and_schema(client, slug)
    body = {"name": name, "data": data, "block_type_id": type_id, "block_schema_id": schema_id}
    return str(_request(client, "POST", "/block_documents/", body)["id"])


def notify_webhook(url: str) -> dict[str, Any]:
    """The default notification block: a JSON POST of the subject and body to `url`."""
    return {
        "name": "splendor-notify",
        "url": url,
        "method": "POST",
        "json_data": {"subject": "{{subject}}", "body": "{{body}}"},
        "allow_private_urls": True,
    }


def events_webhook(api_url: str, auth_string: str | None) -> dict[str, Any]:
    """The server's own events endpoint, so an automation can publish an event."""
    headers = {"Content-Type": "application/json"}
    if auth_string:
        # The server's basic auth (PREFECT_SERVER_API_AUTH_STRING); Prefect stores headers encrypted.
        headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
    return {
        "url": f"{api_url.rstrip('/')}/events",
        "method": "POST",
        "headers": headers,
        "allow_private_urls": True,
    }


@dataclass
class Applied:
    ids: dict[str, str] = field(default_factory=dict)  # automation name -> id
    skipped: dict[str, str] = field(default_factory=dict)  # automation name -> why


def apply(
    api_url: str,
    automations: list[dict[str, Any]],
    *,
    notify_url: str | None = None,
    auth_string: str | None = None,
) -> Applied:
    """Create each automation, or update the one of the same name in place.

    `notify_url` (else $SPLENDOR_NOTIFY_URL) creates or re-points the notification webhook; without it an
    existing block (perhaps pointed at Slack in the UI) is kept as it is.
    """
    notify_url = notify_url or os.environ.get(NOTIFY_URL_ENV) or None
    applied = Applied()
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=30) as client:
        block_ids: dict[str, str] = {}
        wanted = blocks_named(automations)
        if EVENTS_BLOCK in wanted:
            block_ids[EVENTS_BLOCK] = put_block(client, EVENTS_BLOCK, events_webhook(api_url, auth_string))
        if NOTIFY_BLOCK in wanted and notify_url:
            block_ids[NOTIFY_BLOCK] = put_block(client, NOTIFY_BLOCK, notify_webhook(notify_url))
        for ref in wanted - set(block_ids):
            found = _find_block(client, ref)
            if found is not None:
                block_ids[ref] = found
        for automation in automations:
            name = automation["name"]
            missing = blocks_named([automation]) - set(block_ids)
            if missing:
                applied.skipped[name] = f"no block {', '.join(sorted(missing))}"
                continue
            automation = with_block_ids(automation, block_ids)
            found = _request(
                client, "POST", "/automations/filter", {"automations": {"name": {"any_": [name]}}}
            )
            if found:
                keep, *duplicates = found
                _request(client, "PUT", f"/automations/{keep['id']}", automation)
                # Earlier manual `prefect automation create` runs may have left copies: one is enough.
                for duplicate in duplicates:
                    _request(client, "DELETE", f"/automations/{duplicate['id']}")
                applied.ids[name] = str(keep["id"])
            else:
                created = _request(client, "POST", "/automations/", automation)
                applied.ids[name] = str(created["id"])
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-url", required=True, help="e.g. http://127.0.0.1:4200/api")
    parser.add_argument("--file", type=Path, default=AUTOMATIONS_FILE)
    parser.add_argument(
        "--notify-url",
        help=f"where notifications are posted (else ${NOTIFY_URL_ENV}; else the {NOTIFY_BLOCK} block as is)",
    )
    parser.add_argument(
        "--within",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="change an automation's window, e.g. splendor-source-freshness=180000 (repeatable)",
    )
    args = parser.parse_args(argv)
    windows = {name: float(seconds) for name, _, seconds in (w.partition("=") for w in args.within)}
    applied = apply(
        args.api_url,
        with_windows(load(args.file), windows),
        notify_url=args.notify_url,
        auth_string=os.environ.get("PREFECT_API_AUTH_STRING"),
    )
    for name, automation_id in applied.ids.items():
        print(f"{name}: {automation_id}")
    for name, why in applied.skipped.items():
        print(f"{name}: skipped ({why})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
