"""Every relative link in README.md and docs/*.md resolves: to a file, and for `#anchor` to a heading of it.

Anchors are the ones GitHub gives headings: lowercased, punctuation dropped, spaces turned to dashes, a
repeated heading numbered (`-1`, `-2`). Links inside fenced code blocks are examples, not links.
"""

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at the first space (a title may follow) or `)`.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (those inside become empty, keeping line numbers)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def broken_links(path: Path) -> list[str]:
    """`line: target (why)` for each relative link of `path` that does not resolve."""
    broken = []
    for number, line in enumerate(prose_lines(path.read_text()), start=1):
        for target in LINK.findall(line):
            if EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{number}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{number}: {target} (no heading with that anchor)")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    assert broken_links(document) == []


def test_anchors_are_githubs() -> None:
    assert slug("Schedules: one scheduler per source, many sources per scheduled run") == (
        "schedules-one-scheduler-per-source-many-sources-per-scheduled-run"
    )
    assert slug("The `sync-fleet` flow (and `make bench`)") == "the-sync-fleet-flow-and-make-bench"
    assert slug("N = 200") == "n--200"


def test_a_missing_file_a_missing_heading_and_a_repeated_heading_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## Part\n\n## Part\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#part-1) [ok](#here) [web](https://example.com/x.md)\n"
        "# Here\n"
        "[gone](missing.md) [no heading](other.md#part-2) ![img](pic.png)\n"
        "```\n[example only](nowhere.md)\n```\n"
    )
    assert broken_links(page) == [
        "3: missing.md (no such file)",
        "3: other.md#part-2 (no heading with that anchor)",
        "3: pic.png (no such file)",
    ]
