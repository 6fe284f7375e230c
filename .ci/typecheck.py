"""mypy --strict over every product package, with errors reported at their paths in the repository.

flows/, tasks/ and deployments/ install as splendor_flows.flows / .tasks / .deployments (pyproject's
[tool.setuptools.package-dir]). mypy cannot follow that mapping: setuptools' editable install does it
with an import hook at run time. So this lays the installed package out as symlinks under
var/typecheck/ (rebuilt on every run, from the mapping in pyproject), runs mypy with the `files` that
pyproject's [tool.mypy] names, and maps the paths in its output back to the repository.

Usage: python .ci/typecheck.py [extra mypy arguments]
"""

import shutil
import sys
import tomllib
from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parent.parent
LAYOUT = Path("var/typecheck")
PACKAGE = "splendor_flows"


def build_layout() -> dict[str, str]:
    """Symlink the installed layout of PACKAGE; returns {path in the layout: path in the repo}."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapped = {
        name.split(".", 1)[1]: folder
        for name, folder in config["tool"]["setuptools"]["package-dir"].items()
        if name.startswith(f"{PACKAGE}.")
    }
    root = REPO / LAYOUT / PACKAGE
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for entry in (REPO / PACKAGE).iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for sub, folder in mapped.items():
        (root / sub).symlink_to(REPO / folder, target_is_directory=True)
    # Longest first: a mapped subpackage wins over the package itself.
    paths = {f"{LAYOUT}/{PACKAGE}/{sub}/": f"{folder}/" for sub, folder in mapped.items()}
    paths[f"{LAYOUT}/{PACKAGE}/"] = f"{PACKAGE}/"
    return paths


def main(argv: list[str]) -> int:
    paths = build_layout()
    stdout, stderr, status = api.run(argv)
    for layout_path, repo_path in sorted(paths.items(), key=lambda item: -len(item[0])):
        stdout = stdout.replace(layout_path, repo_path)
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return status


if __name__ == "__main__":
    import os

    os.chdir(REPO)
    sys.exit(main(sys.argv[1:]))
