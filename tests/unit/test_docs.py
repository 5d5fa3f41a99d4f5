"""The docs stay true without anyone remembering to copy: every generated block equals what
torchenv/commands/docsgen.py makes from its source, and every relative link leads somewhere."""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import fields
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.commands import docsgen, performance
from torchenv.model.records import BenchResults
from torchenv.model.settings import Settings

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]

# Where each block must appear (a page may show a block more than once; each copy is checked).
HOMES = {
    "matrix": "README.md",
    "settings": "docs/configuration.md",
    "performance": "docs/performance.md",
    "compat": "docs/projects.md",
}


def shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT))


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """TEXT without fenced code and inline code, where brackets are not links and markers are not markers."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


@pytest.mark.parametrize("path", DOCS, ids=shown)
def test_generated_blocks_equal_their_source(path: Path) -> None:
    text = path.read_text()
    for name in docsgen.block_names(prose(text)):
        assert name in docsgen.BLOCKS, f"{shown(path)}: unknown block <!-- {name}:begin -->; known: {', '.join(docsgen.BLOCKS)}"
        found = docsgen.find_block(text, name)
        assert found is not None, f"{shown(path)}: <!-- {name}:begin --> has no <!-- {name}:end --> on a line of its own"
        assert found.strip() == docsgen.BLOCKS[name]().strip(), (
            f"{shown(path)}: the {name} block is stale; paste `python3 -m torchenv.commands.docsgen {name}` between its markers"
        )


@pytest.mark.parametrize(("name", "home"), HOMES.items())
def test_each_block_is_shown_where_readers_look(name: str, home: str) -> None:
    assert docsgen.find_block((PROJECT_ROOT / home).read_text(), name) is not None, f"{home} lacks the <!-- {name}:begin/end --> block"


# ---- links -------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file."""
    made: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_fences(path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, count = slug, 0
        while candidate in made:
            count += 1
            candidate = f"{slug}-{count}"
        made.add(candidate)
    return made


@pytest.mark.parametrize("path", DOCS, ids=shown)
def test_relative_links_point_to_existing_files(path: Path) -> None:
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no {file_part})")
        elif not destination.is_relative_to(PROJECT_ROOT):
            broken.append(f"{target} (outside the project)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{shown(path)}: broken links: {'; '.join(broken)}"


def test_the_link_check_sees_links() -> None:
    text = "See [a](docs/a.md#x) and ![b](b.png), not `[c](c.md)` or\n```\n[d](d.md)\n```\n"
    assert LINK.findall(prose(text)) == ["docs/a.md#x", "b.png"]


# ---- settings ----------------------------------------------------------------------------


def test_field_comments_are_the_lines_right_above_a_field() -> None:
    source = (
        "class Settings:\n"
        "    # Two lines\n"
        "    # of comment.\n"
        "    first: str = ''\n"
        "    second: int = 0\n"
        "    # Not the field's: a blank line lies between.\n"
        "\n"
        "    third: bool = False\n"
        "    def method(self) -> None: ...\n"
    )
    assert docsgen.field_comments(source) == {"first": "Two lines of comment."}


def test_every_setting_has_a_description() -> None:
    commented = docsgen.field_comments(docsgen.SETTINGS_SOURCE.read_text())
    names = {field.name for field in fields(Settings)}
    assert names <= set(commented), f"give each Settings field a comment in {docsgen.SETTINGS_SOURCE}: {sorted(names - set(commented))}"


def test_table_cells_do_not_break_markdown() -> None:
    assert docsgen.cell("tagged <name>:<variant> | x & y") == "tagged &lt;name&gt;:&lt;variant&gt; \\| x &amp; y"


# ---- performance -------------------------------------------------------------------------


def test_a_figure_not_measured_shows_as_a_dash_or_not_at_all() -> None:
    full = performance.load_results()
    cu117, cu121 = (full.variants[name] for name in ("cu117", "cu121"))
    no_cold = {key: value for key, value in cu121.times.items() if key != "cold_build"}
    partial_cu121 = dataclasses.replace(cu121, times=no_cold, sizes=cu121.sizes | {"zstd": 0})
    table = docsgen.performance_table(BenchResults("then", {"cu117": cu117, "cu121": partial_cu121}))
    assert "| cold build / floor (download + uv install) | 55 / (17 + 7) s = 2.33x | - | <= 1.3x: missed |" in table
    assert "| pushed with zstd (`invoke push`) / naive pushed with gzip | 1.58 / 2.46 GB = 0.64x | - | <= 0.9x: met |" in table
    assert "cold build" not in docsgen.performance_table(BenchResults("then", {"cu121": partial_cu121}))


def test_a_target_met_by_some_variants_names_them() -> None:
    figure = performance.Figure("x", lambda s, t: None, 10, " s")
    assert performance.verdict(figure, {"a": ("3 s", 3), "b": ("15 s", 15), "c": None}) == "<= 10 s: met on a"
    assert performance.verdict(figure, {"a": ("11 s", 11)}) == "<= 10 s: missed"


def gpu_dependent_tests() -> set[str]:
    """The image and project tests whose expectation reads TORCHENV_TEST_GPUS (GPUS), in their
    body, their decorators or a module constant they use, and those marked gpu (collected
    only with it)."""
    found = set()
    for path in [*(PROJECT_ROOT / "tests" / "images").glob("test_*.py"), *(PROJECT_ROOT / "tests" / "projects").glob("test_*.py")]:
        tree = ast.parse(path.read_text())
        depends = {"GPUS", "GPUS_REQUESTED"}
        for node in tree.body:  # module constants made from them
            if isinstance(node, ast.Assign) and {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)} & depends:
                depends |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marked_gpu = any(isinstance(n, ast.Attribute) and n.attr == "gpu" for d in node.decorator_list for n in ast.walk(d))
                if marked_gpu or {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & depends:
                    found.add(node.name)
    return found


def test_the_gpu_aware_tests_are_listed_in_the_development_guide() -> None:
    text = (PROJECT_ROOT / "docs" / "development.md").read_text()
    section = text.split("### With GPUs: `TORCHENV_TEST_GPUS`", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^- `(test_\w+)`", section, re.M))
    assert listed == gpu_dependent_tests()
