"""Project-wide promises: ruff clean, and docs that are generated from the matrix stay so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from torchenv import PROJECT_ROOT
from torchenv.commands import listing
from torchenv.model.matrix import load_matrix

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
