"""Create or update the automations of deployments/automations.yaml on a Prefect server, by name.

Plain REST (the server validates the bodies), so the stack does not import Prefect. Also a command:

    python -m stack.automations --api-url http://127.0.0.1:4200/api
"""

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
AUTOMATIONS_FILE = REPO / "deployments" / "automations.yaml"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"


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
    result = copy.deepcopy(automations)
    for automation in result:
        if is_zombie_detector(automation):
            automation["trigger"]["within"] = within_seconds
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


def apply(api_url: str, automations: list[dict[str, Any]]) -> dict[str, str]:
    """Create each automation, or update the one of the same name in place. Returns name -> id."""
    ids: dict[str, str] = {}
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=30) as client:
        for automation in automations:
            name = automation["name"]
            found = _request(
                client, "POST", "/automations/filter", {"automations": {"name": {"any_": [name]}}}
            )
            if found:
                keep, *duplicates = found
                _request(client, "PUT", f"/automations/{keep['id']}", automation)
                # Earlier manual `prefect automation create` runs may have left copies: one is enough.
                for duplicate in duplicates:
                    _request(client, "DELETE", f"/automations/{duplicate['id']}")
                ids[name] = str(keep["id"])
            else:
                created = _request(client, "POST", "/automations/", automation)
                ids[name] = str(created["id"])
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-url", required=True, help="e.g. http://127.0.0.1:4200/api")
    parser.add_argument("--file", type=Path, default=AUTOMATIONS_FILE)
    args = parser.parse_args(argv)
    for name, automation_id in apply(args.api_url, load(args.file)).items():
        print(f"{name}: {automation_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
