"""The Markdown blocks the docs show between `<!-- NAME:begin -->` and `<!-- NAME:end -->`,
made from their sources so that no table is a hand copy: the matrix (images/matrix.toml),
the settings (the Settings dataclass and the comments above its fields) and the latest
performance figures (bench/results/latest.json). tests/unit/test_docs.py keeps each
block in the docs equal to what this module makes.

Print one with `python3 -m torchenv.commands.docsgen NAME` and paste it between its markers.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torchenv import PROJECT_ROOT, display_path
from torchenv.commands import listing
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings

SETTINGS_SOURCE = Path(inspect.getsourcefile(Settings) or "settings.py")
BENCH_RESULTS = PROJECT_ROOT / "bench" / "results" / "latest.json"

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

GB = 1e9


@dataclass(frozen=True)
class Figure:
    """One metric of the bench: how a variant's figures show it, and its target."""

    metric: str
    # (what the cell shows, the value judged against the target), or None if not measured.
    measure: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, float] | None]
    target: float
    unit: str = "x"
    at_least: bool = False  # the target is a floor (>=), not a ceiling (<=)

    def bound(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.target:g}{self.unit}"

    def met(self, value: float) -> bool:
        return value >= self.target if self.at_least else value <= self.target


def ratio(part: float, whole: float, unit: str, scale: float = 1) -> tuple[str, float]:
    return f"{part / scale:.2f} / {whole / scale:.2f} {unit} = {part / whole:.2f}x", part / whole


def cold_build(times: Mapping[str, Any]) -> tuple[str, float] | None:
    if "cold_build" not in times:  # measured only with `invoke bench --cold`
        return None
    floor = times["floor_download"] + times["floor_install"]
    shown = f"{times['cold_build']:.0f} / ({times['floor_download']:.0f} + {times['floor_install']:.0f}) s"
    return f"{shown} = {times['cold_build'] / floor:.2f}x", times["cold_build"] / floor


def seconds(value: float) -> tuple[str, float]:
    return f"{value:.1f} s", value


def throughput(container: float, host: float) -> tuple[str, float]:
    return f"{container / 1e3:.0f}k / {host / 1e3:.0f}k samples/s = {container / host:.2f}x", container / host


# The targets are bench/performance.py's (issue 7's); the docs test checks that both judge
# every figure alike. Keys: s = the variant's "sizes", t = its "times".
FIGURES = (
    Figure("image / naive single-stage image (uncompressed)", lambda s, t: ratio(s["image"], s["naive_image"], "GB", GB), 0.95),
    Figure(
        "image - installed size of the locked wheels (untrimmed)",
        lambda s, t: (f"{(s['image'] - s['wheels_installed']) / 1e6:.0f} MB", (s["image"] - s["wheels_installed"]) / 1e6),
        400,
        " MB",
    ),
    Figure(
        "pushed with zstd 19 (the default) / naive pushed with gzip",
        lambda s, t: ratio(s["zstd"], s["naive_gzip"], "GB", GB) if s.get("zstd") else None,
        0.9,
    ),
    Figure(
        "pushed with gzip (`--compression gzip`) / naive pushed with gzip", lambda s, t: ratio(s["gzip"], s["naive_gzip"], "GB", GB), 0.9
    ),
    Figure("cold build / floor (download + uv install)", lambda s, t: cold_build(t), 1.3),
    Figure("rebuild after editing the demo", lambda s, t: seconds(t["demo_edit_rebuild"]), 10, " s"),
    Figure("no-op rebuild", lambda s, t: seconds(t["no_op_rebuild"]), 5, " s"),
    Figure("`docker compose run verify` (CPU)", lambda s, t: seconds(t["compose_verify"]), 8, " s"),
    Figure(
        "`import torch`: container / host, same wheels",
        lambda s, t: ratio(t["import_torch_container"], t["import_torch_host"], "s"),
        1.1,
    ),
    Figure(
        "training throughput: container / host, same wheels",
        lambda s, t: throughput(t["train_samples_per_s_container"], t["train_samples_per_s_host"]),
        0.97,
        at_least=True,
    ),
)


def load_results(path: Path = BENCH_RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text())


def measured(results: Mapping[str, Any]) -> list[tuple[Figure, dict[str, tuple[str, float] | None]]]:
    """Each figure with its (cell, value) per variant, None where that variant lacks it."""
    variants = results["variants"]
    return [(figure, {name: figure.measure(v["sizes"], v["times"]) for name, v in variants.items()}) for figure in FIGURES]


def verdict(figure: Figure, values: Mapping[str, tuple[str, float] | None]) -> str:
    judged = {name: figure.met(value[1]) for name, value in values.items() if value is not None}
    if all(judged.values()):
        outcome = "met"
    elif not any(judged.values()):
        outcome = "missed"
    else:
        outcome = "met on " + ", ".join(name for name, met in judged.items() if met)
    return f"{figure.bound()}: {outcome}"


def performance_table(results: Mapping[str, Any] | None = None) -> str:
    results = load_results() if results is None else results
    names = list(results["variants"])
    lines = [
        f"Measured {results['measured']} (`bench/results/latest.json`).",
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


# ---- all of them -------------------------------------------------------------------------

BLOCKS: dict[str, Callable[[], str]] = {
    "matrix": matrix_table,
    "settings": settings_table,
    "performance": performance_table,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in BLOCKS:
        print(f"usage: python3 -m torchenv.commands.docsgen {{{','.join(BLOCKS)}}}", file=sys.stderr)
        return 2
    print(BLOCKS[argv[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
