"""Screenshots of the browser scenarios.

Every scenario writes its screenshots to `var/browser/` (ignored by git), so a failed CI run leaves
pictures of what the page showed. Some of them illustrate the docs; they are committed as
`docs/ui-*.png` and refreshed with

    UPDATE_DOCS_SCREENSHOTS=1 .venv/bin/pytest tests/browser -q
"""

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "var" / "browser"
DOCS = REPO / "docs"
PAD = 12
# Bring an element to the top of whatever scrolls it, leaving a margin above it (scrollIntoView alone
# puts it flush with the edge, and the clip would then cut its first line).
SCROLL_TO_TOP = """(element, margin) => {
    element.scrollIntoView({block: "start"});
    const scrolls = (box) =>
        box.scrollHeight > box.clientHeight && /auto|scroll/.test(getComputedStyle(box).overflowY);
    let box = element.parentElement;
    while (box && !scrolls(box)) {
        box = box.parentElement;
    }
    (box || document.scrollingElement).scrollBy(0, -margin);
}"""


def clear() -> None:
    """Start a run of the suite with an empty folder, so what is there belongs to this run."""
    for old in SHOTS.glob("*.png"):
        old.unlink()


def _saved(path: Path, docs: bool) -> Path:
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        (DOCS / f"ui-{path.stem}.png").write_bytes(path.read_bytes())
    return path


def shot(target: Page | Locator, name: str, *, docs: bool = False) -> Path:
    """A PNG of the viewport (Page) or of one element (Locator)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # CSS scale: one image pixel per CSS pixel whatever the device scale, which keeps the files small.
    target.screenshot(path=path, scale="css", animations="disabled")
    return _saved(path, docs)


def shot_region(page: Page, top: Locator, bottom: Locator, name: str, *, docs: bool = False) -> Path:
    """A PNG of the part of the page from `top` to `bottom`: the few fields or rows a reader should
    look at, without the sidebar and the blank space around them."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    top.evaluate(SCROLL_TO_TOP, PAD * 4)
    boxes: list[Any] = [top.bounding_box(), bottom.bounding_box()]
    assert all(boxes), f"{name}: a bound of the region is not rendered"
    left = min(b["x"] for b in boxes)
    right = max(b["x"] + b["width"] for b in boxes)
    upper = min(b["y"] for b in boxes)
    lower = max(b["y"] + b["height"] for b in boxes)
    clip = {
        "x": max(left - PAD, 0),
        "y": max(upper - PAD, 0),
        "width": right - left + 2 * PAD,
        "height": lower - upper + 2 * PAD,
    }
    page.screenshot(path=path, clip=clip, scale="css", animations="disabled")
    return _saved(path, docs)
