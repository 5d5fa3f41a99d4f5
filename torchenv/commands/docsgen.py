"""The Markdown blocks the docs show between `<!-- NAME:begin -->` and `<!-- NAME:end -->`,
made from their sources so that no table is a hand copy: the matrix (images/matrix.toml),
the settings (the Settings dataclass and the comments above its fields), the latest
performance figures (bench/results/latest.json) and what each third-party project's locks
install per variant (tests/projects/compat). tests/unit/test_docs.py keeps each
block in the docs equal to what this module makes.

Print one with `python3 -m torchenv.commands.docsgen NAME` and paste it between its markers.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from torchenv import PROJECT_ROOT, display_path
from torchenv.commands import listing
from torchenv.commands.performance import load_results, measured, verdict
from torchenv.locking.layering import normalised
from torchenv.locking.project_locks import read_project_lock
from torchenv.model import platforms
from torchenv.model.matrix import load_matrix
from torchenv.model.project import load_project
from torchenv.model.records import BenchResults
from torchenv.model.settings import Settings

SETTINGS_SOURCE = Path(inspect.getsourcefile(Settings) or "settings.py")

# Fields that have no comment above them in the settings module yet. A comment there
# wins; the docs test fails on an entry here that the source no longer needs.


# ---- blocks between markers ------------------------------------------------------------


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def find_block(text: str, name: str) -> str | None:
    """The text between NAME's markers (without the newlines next to them), or None."""
    begin, end = markers(name)
    found = re.search(rf"{re.escape(begin)}\n(.*?)\n{re.escape(end)}", text, re.S)
    return found.group(1) if found else None


def block_names(text: str) -> list[str]:
    """The names of every `<!-- NAME:begin -->` marker in TEXT, in order."""
    return re.findall(r"<!-- ([\w-]+):begin -->", text)


# ---- the matrix --------------------------------------------------------------------------


def matrix_table() -> str:
    """What `invoke list --markdown` prints."""
    return listing.markdown_table(load_matrix())


# ---- settings ----------------------------------------------------------------------------


def field_comments(source: str, class_name: str = "Settings") -> dict[str, str]:
    """Each field of CLASS_NAME in SOURCE with the `#` comment lines right above it, joined
    into one sentence; fields without such a comment are left out."""
    lines = source.splitlines()
    (cls,) = (node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == class_name)
    comments = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        number = node.lineno - 2  # the line above the field, 0-based
        while number >= 0 and lines[number].strip().startswith("#"):
            above.insert(0, lines[number].strip().lstrip("#").strip())
            number -= 1
        if above:
            comments[node.target.id] = " ".join(above)
    return comments


def shown_default(value: Any) -> str:
    """A default as one writes it in TORCHENV_* or invoke.yaml."""
    if isinstance(value, Path):
        return f"`{display_path(value)}`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def cell(text: str) -> str:
    """Plain text made safe for a table cell: `<name>` would be read as HTML, `|` as a column."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def settings_table(source: Path = SETTINGS_SOURCE) -> str:
    comments = field_comments(source.read_text())
    lines = ["| setting | environment variable | default | what it is |", "| --- | --- | --- | --- |"]
    for field in fields(Settings):
        about = comments.get(field.name, "")
        lines.append(f"| `{field.name}` | `TORCHENV_{field.name.upper()}` | {shown_default(field.default)} | {cell(about)} |")
    return "\n".join(lines)


# ---- performance -------------------------------------------------------------------------


def performance_table(results: BenchResults | None = None) -> str:
    results = load_results() if results is None else results
    names = list(results.variants)
    lines = [
        f"Measured {results.measured} (`bench/results/latest.json`).",
        "",
        "| metric | " + " | ".join(names) + " | target |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for figure, values in measured(results):
        if all(value is None for value in values.values()):
            continue  # not measured in this run at all (e.g. no --cold)
        shown = [value[0] if value else "-" for value in values.values()]
        lines.append(f"| {figure.metric} | " + " | ".join(shown) + f" | {verdict(figure, values)} |")
    return "\n".join(lines)


# ---- the third-party projects ----------------------------------------------------------

COMPAT_PROJECTS = PROJECT_ROOT / "tests" / "projects" / "compat"


def compat_table(folder: Path = COMPAT_PROJECTS) -> str:
    """Each third-party project (tests/projects/test_compat.py) on each variant: the versions
    its committed lock for that variant installs, or why there is none."""
    projects = [load_project(path.parent) for path in sorted(folder.glob("*/pyproject.toml"))]
    variants = [variant for variant in load_matrix().every_build() if variant.platform == platforms.AMD64]
    lines = ["| project | " + " | ".join(variant.name for variant in variants) + " |", "| --- |" + " --- |" * len(variants)]
    for project in projects:
        named = [normalised(Requirement(text).name) for text in project.dependencies]
        cells = []
        for variant in variants:
            lock = read_project_lock(project, variant)
            if lock is not None:
                pins = lock.packages
                cells.append("locked: " + ", ".join(f"{name} {pins[name]}" for name in named if name in pins))
            elif variant.pytorch_channel is not None:
                cells.append(f"not built here (the PyTorch index, {variant.pytorch_channel})")
            else:
                cells.append("not locked yet")
        lines.append(f"| {project.name.removeprefix('compat-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- all of them -------------------------------------------------------------------------

BLOCKS: dict[str, Callable[[], str]] = {
    "matrix": matrix_table,
    "settings": settings_table,
    "performance": performance_table,
    "compat": compat_table,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in BLOCKS:
        print(f"usage: python3 -m torchenv.commands.docsgen {{{','.join(BLOCKS)}}}", file=sys.stderr)
        return 2
    print(BLOCKS[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
