"""Reading back the events a Prefect server recorded (its `/events/filter` API), for the tests that
check what the pipelines published and what the automations reacted to."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx


async def read_events(
    api_url: str, *, resource_prefix: str | None = None, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every event the server holds that matches, oldest first (all pages)."""
    event_filter: dict[str, Any] = {"order": "ASC"}
    if resource_prefix is not None:
        event_filter["resource"] = {"id_prefix": [resource_prefix]}
    if names is not None:
        event_filter["event"] = {"name": names}
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{api_url}/events/filter", json={"filter": event_filter, "limit": 50})
        response.raise_for_status()
        page = response.json()
        while True:
            events += page["events"]
            if not page.get("next_page"):
                return events
            response = await http.get(page["next_page"])
            response.raise_for_status()
            page = response.json()


async def wait_for_events(
    api_url: str,
    until: Callable[[list[dict[str, Any]]], bool],
    *,
    resource_prefix: str | None = None,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Events reach the server through a background worker: read until `until` holds, or give up and
    return what arrived (the caller's assertions then say what is missing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events = await read_events(api_url, resource_prefix=resource_prefix)
        if until(events) or loop.time() > deadline:
            return events
        await asyncio.sleep(0.3)
