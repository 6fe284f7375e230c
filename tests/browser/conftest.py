"""Browser tests of the Prefect UI: the system's Chromium, driven by Playwright, against the e2e stack.

One `prefect server start` with its UI on, `connect-source` served from this checkout, the emulator
behind it, and one Chromium for the whole package; every test gets a fresh browser context. Playwright
never downloads a browser here: it launches Debian's `chromium` package (`.ci/run` installs it). On a
developer machine without it the tests skip; under `SPLENDOR_REQUIRE_BROWSER=1` (set by `.ci/run`) a
missing Chromium is an error instead, so CI cannot pass by skipping.
"""

import contextlib
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Response, expect, sync_playwright

from tests.e2e.conftest import Proc, Stack, api, deployment_id, running_stack

from . import screens

CHROMIUM = shutil.which("chromium")
SKIP_REASON = "Chromium is not installed (Debian: apt-get install chromium); the browser tests need it"
if CHROMIUM is None and os.environ.get("SPLENDOR_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"SPLENDOR_REQUIRE_BROWSER=1 but {SKIP_REASON}")

# Build machines reach nothing but loopback and package registries: without these switches Chromium
# spends its start-up on update checks, sync and QUIC probes whose connections are refused.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Prefect 3.9 serves two UIs and "/" redirects to the default one, the React UI under /v2
# (`server.ui.v2_enabled`, true by default). Deep links without /v2 open the older UI.
UI_PREFIX = "/v2"
# Playwright's 5 s default for assertions is short for a UI that polls a server sharing two busy cores
# (with `make test`, also with the other test processes). Only a failing wait pays for the length.
expect.set_options(timeout=30_000)
DEPLOYMENT = "connect-source"
SECRET_BLOCK = "browser-stripe-credentials"
FINAL = ("Completed", "Failed", "Crashed", "Cancelled")


@dataclass
class Ui:
    stack: Stack
    origin: str  # http://127.0.0.1:<port>, the server that serves both the API and the UI
    deployment_id: str

    def url(self, path: str) -> str:
        return f"{self.origin}{UI_PREFIX}{path}"


def _wait_served(stack: Stack, serve: Proc) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if serve.popen.poll() is not None:
            raise RuntimeError(f"serve exited {serve.popen.returncode}:\n{serve.tail()}")
        with contextlib.suppress(httpx.HTTPStatusError):
            return deployment_id(stack, DEPLOYMENT)
        time.sleep(0.3)
    raise RuntimeError(f"serve did not register {DEPLOYMENT} in 60 s:\n{serve.tail()}")


@pytest.fixture(scope="package")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with running_stack(tmp_path_factory.mktemp("browser"), ui=True) as stack:
        # The connector credentials live in a Secret block on the server; the form only names it.
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            Secret(
                value={"api_key": "sk_test_browser000000", "account_id": "acct_browser"},
            ).save(SECRET_BLOCK, overwrite=True)
        serve = stack.procs.start(
            "serve",
            [sys.executable, "-m", "splendor_flows.deployments.serve", "--only", DEPLOYMENT],
            stack.env,
        )
        dep_id = _wait_served(stack, serve)
        # running_stack stops every process it started, the serve process included.
        yield Ui(stack=stack, origin=stack.api_url.removesuffix("/api"), deployment_id=dep_id)


@pytest.fixture(scope="package")
def browser(ui: Ui) -> Iterator[Browser]:
    # Requests `ui` so that fixture's Prefect calls run first: while Playwright's sync API is active it
    # marks its own event loop as running in this thread, and Prefect's sync calls would then hand back
    # coroutines instead of running.
    screens.clear()
    with sync_playwright() as playwright:
        # launch() (not a persistent context) gives Chromium a fresh temporary profile every time.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


FAILED_CALL = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_CALL] = True
    return report


@pytest.fixture
def page(browser: Browser, ui: Ui, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    # The UI also asks third parties for things (analytics config, fonts). Refuse anything that is not
    # on loopback at once, rather than have each request wait for a DNS failure on a closed network.
    context.route(lambda url: not url.startswith("http://127.0.0.1:"), lambda route: route.abort())
    context.set_default_timeout(45_000)
    page = context.new_page()
    # The UI reports a refused request only in a toast that is gone a few seconds later: keep them.
    refused: list[str] = []

    def keep_refused(response: Response) -> None:
        if response.status >= 400 and "/api/" in response.url:
            refused.append(f"{response.status} {response.request.method} {response.url}")

    page.on("response", keep_refused)
    yield page
    if request.node.stash.get(FAILED_CALL, False):
        # What the page showed when the test failed: the first thing to look at in a CI log.
        screens.shot(page, f"FAILED-{request.node.name}")
        print("API requests of the UI that failed:", *refused or ["none"], sep="\n  ")
    context.close()


# --- helpers used by the tests ---------------------------------------------------------------------------


def state_badge(page: Page, state: str) -> Locator:
    """The run page's state badge. The React UI gives it no role or test id, only the `data-slot`
    attribute of its Badge component; filtering on the exact state name keeps tag badges out."""
    return page.locator('main [data-slot="badge"]').filter(has_text=re.compile(rf"^{state}$")).first


def wait_for_state(page: Page, state: str, ui: "Ui", run_id: str, timeout_s: float = 90) -> None:
    """Wait until the run is in `state` and the open run page shows it (the UI polls the run), failing
    early on another final state so a broken run does not cost the whole timeout.

    The server's answer comes first: other runs' badges can sit on the same page (a list of the
    deployment's recent runs), so a badge alone may name another run's state.
    """
    names = {state, *FINAL}
    deadline = time.monotonic() + timeout_s
    while (current := read_run(ui, run_id)["state"]["name"]) not in names:
        assert time.monotonic() < deadline, f"run {run_id} still {current!r} after {timeout_s:.0f} s"
        time.sleep(0.5)
    assert current == state, f"run {run_id} ended {current!r}, not {state!r}"
    wanted = "|".join(names)
    badge = page.locator('main [data-slot="badge"]').filter(has_text=re.compile(rf"^({wanted})$")).first
    expect(badge).to_be_visible(timeout=timeout_s * 1000)
    assert badge.inner_text().strip() == state, f"the run page shows {badge.inner_text()!r}, not {state!r}"


def answered(page: Page, endpoint: str, gesture: Callable[[], None], attempts: int = 3) -> Response:
    """Do `gesture` (clicks that make the UI send a POST to `endpoint`) and return the server's answer.

    A SQLite-backed Prefect server answers 503 while its database is locked by another writer (the
    flow runs of the other scenarios); the request was rolled back. Prefect's Python client retries
    those; the UI only shows a toast, and the person clicks again. So does this, on 503 only.
    """
    for _ in range(attempts):
        with page.expect_response(lambda r: endpoint in r.url and r.request.method == "POST") as info:
            gesture()
        if info.value.status != 503:
            return info.value
    raise AssertionError(f"the Prefect server answered {endpoint} with 503 {attempts} times")


def run_menu(page: Page, item: str) -> None:
    """Open the run page's action menu (the header's only "Open menu" button) and pick `item`."""
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def create_run(ui: Ui, parameters: dict[str, Any]) -> str:
    """Start a connect-source run through the API, for scenarios that are not about the form."""
    run = api(
        ui.stack, "POST", f"/deployments/{ui.deployment_id}/create_flow_run", json={"parameters": parameters}
    )
    return str(run["id"])


def read_run(ui: Ui, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api(ui.stack, "GET", f"/flow_runs/{run_id}")
    return run


def source(ui: Ui, source_key: str) -> dict[str, Any]:
    [found] = [s for s in ui.stack.emulator.sources("acme") if s["source_key"] == source_key]
    return found
