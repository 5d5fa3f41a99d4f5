"""Project-wide promises: ruff clean, and docs that are generated from the matrix stay so."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from torchenv import PROJECT_ROOT
from torchenv.commands import listing
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import PYTORCH_INDEX, Settings

RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_lint_is_clean() -> None:
    result = subprocess.run([str(RUFF), "check", "."], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_ruff_format_is_clean() -> None:
    result = subprocess.run([str(RUFF), "format", "--check", "."], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_matrix_table_is_the_generated_one() -> None:
    """The README shows the matrix; it must be `invoke list --markdown`, not a hand copy."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    found = re.search(r"<!-- matrix:begin -->\n(.*?)\n<!-- matrix:end -->", readme, re.S)
    assert found, "README.md lacks the <!-- matrix:begin/end --> block"
    assert found.group(1).strip() == listing.markdown_table(load_matrix()).strip(), "run: invoke list --markdown, paste into README"


def test_workflows_pass_actionlint() -> None:
    actionlint = Path(sys.executable).with_name("actionlint")
    workflows = sorted(str(path) for path in (PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run([str(actionlint), *workflows], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "docker/Dockerfile", "docker/base/Dockerfile"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_pinned_by_commit() -> None:
    """A tag can be moved to other code; a commit SHA cannot."""
    workflow_text = "\n".join(path.read_text() for path in (PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    uses = re.findall(r"uses:\s*(\S+)", workflow_text)
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action


def test_invoke_matrix_feeds_the_workflow() -> None:
    result = subprocess.run([str(Path(sys.executable).with_name("invoke")), "matrix"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    include = json.loads(result.stdout)["include"]
    assert [entry["variant"] for entry in include] == list(load_matrix().variants)
    workflow = (PROJECT_ROOT / ".github" / "workflows" / "images.yml").read_text()
    assert "invoke matrix" in workflow and "fromJson(needs.matrix.outputs.variants)" in workflow


def python_sources() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [PROJECT_ROOT / name for name in tracked if (PROJECT_ROOT / name).exists()]


def test_only_the_engine_calls_the_docker_cli() -> None:
    """torchenv/engine is the one place that talks to Docker; everything else asks it."""
    calls = re.compile(r"""\[\s*["']docker["']\s*,|["']docker["']\s*,\s*\*""")
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in python_sources()
        if not path.is_relative_to(PROJECT_ROOT / "torchenv" / "engine")
        and path.name != "test_engine_requests.py"
        and calls.search(path.read_text())
    ]
    assert offenders == [], f"these call the docker CLI themselves; go through torchenv.engine: {offenders}"


def test_dependencies_point_one_way() -> None:
    """model <- engine, locking <- pipeline <- commands <- tasks.py; locking never builds
    images, and nothing in torchenv or tasks.py imports bench/."""
    layers = {"model": 0, "engine": 1, "locking": 1, "pipeline": 2, "commands": 3}
    for path in (PROJECT_ROOT / "torchenv").rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT / "torchenv").parts
        if len(parts) < 2:
            continue
        mine = layers[parts[0]]
        text = path.read_text()
        imported_names = re.findall(r"^\s*(?:from|import) torchenv\.(\w+)", text, re.M)
        imported_names += [name.strip() for group in re.findall(r"^\s*from torchenv import (.+)$", text, re.M) for name in group.split(",")]
        for imported in imported_names:
            assert layers.get(imported, -1) <= mine, f"{path.relative_to(PROJECT_ROOT)} imports torchenv.{imported}, which is above it"
            if parts[0] == "locking":
                assert imported not in ("engine", "pipeline"), f"{path.relative_to(PROJECT_ROOT)}: locking must not build images"
    for path in [PROJECT_ROOT / "tasks.py", *(PROJECT_ROOT / "torchenv").rglob("*.py")]:
        assert not re.search(r"^\s*(?:from|import) bench\b", path.read_text(), re.M), f"{path.relative_to(PROJECT_ROOT)} imports bench/"


def test_a_fresh_fork_needs_no_repository_variable_or_secret() -> None:
    """Every job passes with only the default token: a repository variable may only add a
    mirror (empty, the PyTorch index itself is used) or switch on the GPU job."""
    workflow = (PROJECT_ROOT / ".github" / "workflows" / "images.yml").read_text()
    assert set(re.findall(r"secrets\.(\w+)", workflow)) <= {"GITHUB_TOKEN"}
    assert set(re.findall(r"vars\.(\w+)", workflow)) <= {"TORCHENV_PYTORCH_INDEX", "TORCHENV_GPU_RUNNER"}
    assert re.search(r"if: .*vars\.TORCHENV_GPU_RUNNER != ''", workflow)
    assert Settings.load(environ={"TORCHENV_PYTORCH_INDEX": ""}).pytorch_index == PYTORCH_INDEX


def test_what_runs_inside_the_images_parses_as_python_3_9() -> None:
    """The app, the build gate and gpu-check.py run on every variant's Python, 3.9 in cu117-py39."""
    sources = [*(PROJECT_ROOT / "docker").rglob("*.py"), PROJECT_ROOT / "scripts" / "gpu-check.py"]
    assert len(sources) > 5
    for path in sources:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
