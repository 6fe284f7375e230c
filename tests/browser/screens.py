"""Screenshots of the browser scenarios.

Every scenario writes its screenshots to `var/browser/` (ignored by git), so a failed CI run leaves
pictures of what the page showed. Three of them illustrate the README; they are committed as
`docs/ui-*.png` and refreshed with

    UPDATE_DOCS_SCREENSHOTS=1 .venv/bin/pytest tests/browser -q
"""

import os
from pathlib import Path

from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "var" / "browser"
DOCS = REPO / "docs"


def shot(target: Page | Locator, name: str, *, docs: bool = False) -> Path:
    """Save a PNG of a whole viewport (Page) or of one element (Locator: smaller, easier to read)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # CSS scale: one image pixel per CSS pixel whatever the device scale, which keeps the files small.
    target.screenshot(path=path, scale="css", animations="disabled")
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        (DOCS / f"ui-{name}.png").write_bytes(path.read_bytes())
    return path
