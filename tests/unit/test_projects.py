"""A user project on a variant: how its folder is read, what its lock may not move, and
that nothing is tagged before verify and its smoke command passed (the engine faked)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import RunResult
from torchenv.errors import TorchenvError
from torchenv.locking import project_locks, sbom
from torchenv.locking.locks import read_lock
from torchenv.locking.project_locks import is_current, read_project_lock, refuse_moves, unresolvable
from torchenv.model import names
from torchenv.model.matrix import load_matrix
from torchenv.model.names import Label
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline import project_build
from torchenv.pipeline.project_build import check_and_tag, project_request

from .fake_engine import FakeEngine

EXAMPLE = PROJECT_ROOT / "examples" / "finetune"


def project_folder(tmp_path: Path, pyproject: str, folders: tuple[str, ...] = ("src",)) -> Path:
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(pyproject)
    return tmp_path


GOOD = '[project]\nname = "My_Project"\ndependencies = ["numpy<2"]\n[tool.torchenv]\nsmoke = ["python", "-V"]\n'


def test_the_example_project_is_read_as_declared() -> None:
    project = load_project(EXAMPLE)
    assert project.name == "finetune" and project.smoke[:3] == ("python", "-m", "finetune")
    assert "pytest" in project.requirements and any(entry.startswith("transformers") for entry in project.requirements)
    assert project.image_python_path == "/opt/project/src" and project.tests == "tests"


def test_a_name_becomes_a_tag_component_and_src_is_the_default_python_path(tmp_path: Path) -> None:
    project = load_project(project_folder(tmp_path, GOOD))
    assert project.name == "my-project" and project.python_path == ("src",)
    assert project.image_python_path == "/opt/project/src"


@pytest.mark.parametrize(
    ("pyproject", "said"),
    [
        (None, "no pyproject.toml there"),
        ("[project\n", "not valid TOML"),
        ('[project]\ndependencies = []\n[tool.torchenv]\nsmoke = ["true"]\n', "no [project] name"),
        ('[project]\nname = "x"\ndependencies = ["a"]\n', "smoke must be the command"),
        ('[project]\nname = "x"\ndependencies = "numpy"\n[tool.torchenv]\nsmoke = ["true"]\n', "must list requirement strings"),
        ('[project]\nname = "x"\n[tool.torchenv]\nsmoke = ["true"]\npython-path = ["../elsewhere"]\n', "not a folder inside the project"),
        ('[project]\nname = "x"\n[tool.torchenv]\nsmoke = ["true"]\ntests = "tests"\n', "not a folder inside the project"),
        ('[project]\nname = "x"\n[tool.torchenv]\nsmoke = ["true"]\ntests = 3\n', "not a folder inside the project"),
        ('[project]\nname = "x"\n[tool.torchenv]\nsmoke = ["true"]\npython-path = "src"\n', "python-path must list"),
        ('[project]\nname = "x"\n[tool.torchenv]\nsmoke = ["true"]\npython-path = []\n', "python-path must list"),
        ('[project]\nname = "x_"\n[tool.torchenv]\nsmoke = ["true"]\n', "cannot name an image"),
        ('[project]\nname = "base"\n[tool.torchenv]\nsmoke = ["true"]\n', "torchenv's own image names"),
        # Hostile or malformed files (issue 35): each one line, never a traceback.
        ('project = "x"\n[tool.torchenv]\nsmoke = ["true"]\n', "project must be a table"),
        ('tool = 5\n[project]\nname = "x"\n', "tool.torchenv must be a table"),
        ('[project]\nname = "x"\n[tool]\ntorchenv = "x"\n', "tool.torchenv must be a table"),
        ('[project]\nname = "x\\n"\n[tool.torchenv]\nsmoke = ["true"]\n', "cannot name an image"),
        ('[project]\nname = "demo-"\n[tool.torchenv]\nsmoke = ["true"]\n', "cannot name an image"),
        ('[project]\nname = "%s"\n[tool.torchenv]\nsmoke = ["true"]\n' % ("a" * 41), "cannot name an image"),
    ],
)
def test_a_folder_that_is_no_project_fails_in_one_line(tmp_path: Path, pyproject: str | None, said: str) -> None:
    if pyproject is not None:
        project_folder(tmp_path, pyproject)
    with pytest.raises(TorchenvError, match=r"pyproject\.toml") as raised:
        load_project(tmp_path)
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_the_code_layer_leaves_out_locks_and_outputs_at_the_top_only_and_keeps_links(tmp_path: Path) -> None:
    root = project_folder(tmp_path / "p", GOOD, folders=("src/pkg/out", "locks", "out"))
    (root / "src" / "pkg" / "out" / "kept.py").write_text("")
    (root / "out" / "result.json").write_text("{}")
    (root / "link").symlink_to("/etc")
    (root / ".env").write_text("TOKEN=secret")
    (root / "src" / "pkg" / "__pycache__").mkdir()
    variant = load_matrix().get("cu117")
    project = load_project(root)
    lock = project_locks.ProjectLock(root / "locks" / "cu117.txt", "0" * 64, 0, "", "")
    lock.path.write_text("")
    contexts = project_build.project_contexts(project, variant, lock, Settings(work_dir=tmp_path / "work"), "{}")
    code = contexts["project"]
    assert (code / "src" / "pkg" / "out" / "kept.py").exists() and not (code / "out").exists() and not (code / "locks").exists()
    assert (code / "link").is_symlink() and not (code / ".env").exists() and not (code / "src" / "pkg" / "__pycache__").exists()


def test_a_project_holding_torchenvs_work_folder_is_refused(tmp_path: Path) -> None:
    project = load_project(project_folder(tmp_path, GOOD))
    lock = project_locks.ProjectLock(tmp_path / "locks.txt", "0" * 64, 0, "", "")
    lock.path.write_text("")
    with pytest.raises(TorchenvError, match="build secrets would reach the code layer"):
        project_build.project_contexts(project, load_matrix().get("cu117"), lock, Settings(work_dir=tmp_path / "build"), "{}")


def test_a_python_marker_is_judged_by_the_variants_python_not_the_hosts(tmp_path: Path) -> None:
    variant = load_matrix().get("cu117-py39")
    lock = read_lock(variant)
    assert lock is not None
    wanted = "\"numpy>=2; python_full_version >= '3.10'\""
    refuse_moves(load_project(project_folder(tmp_path, GOOD.replace('"numpy<2"', wanted))), variant, lock)


def test_a_pyproject_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    folder = project_folder(tmp_path, GOOD)
    (folder / "pyproject.toml").write_bytes(GOOD.encode().replace(b"My_Project", b"My_\xff"))
    with pytest.raises(TorchenvError, match="is not UTF-8") as raised:
        load_project(folder)
    assert "\n" not in str(raised.value)


def test_a_missing_folder_is_named() -> None:
    with pytest.raises(TorchenvError, match="no such folder"):
        load_project(Path("no/such/project"))


@pytest.mark.parametrize("requirement", ["numpy>=2", "numpy==2.1.0", "torch>=2.1", "triton>2.0.0"])
def test_a_requirement_the_variants_pins_do_not_meet_is_refused_naming_both(tmp_path: Path, requirement: str) -> None:
    matrix = load_matrix()
    variant = matrix.get("cu117")
    lock = read_lock(variant)
    assert lock is not None
    project = load_project(project_folder(tmp_path, GOOD.replace('"numpy<2"', f'"{requirement}"')))
    name = requirement.split(">")[0].split("=")[0]
    with pytest.raises(TorchenvError) as raised:
        refuse_moves(project, variant, lock)
    message = str(raised.value)
    pinned = project_locks.locked_packages(lock)[name]
    assert requirement in message and f"{name}=={pinned}" in message and "cu117" in message and "nothing was built" in message


def test_requirements_the_pins_meet_pass(tmp_path: Path) -> None:
    variant = load_matrix().get("cu117")
    lock = read_lock(variant)
    assert lock is not None
    # The last one is for Python 3.12 only: cu117's Python is 3.11.
    wanted = '"numpy<2", "torch==2.0.*", "tqdm>=4", "numpy>=2; python_version >= \'3.12\'"'
    project = load_project(project_folder(tmp_path, GOOD.replace('"numpy<2"', wanted)))
    refuse_moves(project, variant, lock)


def test_a_dependency_that_moves_torch_is_named_before_anything_else_that_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The explanation resolves without the constraints; uv's answer is recorded here."""
    variant = load_matrix().get("cu117")
    lock = read_lock(variant)
    assert lock is not None
    project = load_project(project_folder(tmp_path, GOOD.replace('"numpy<2"', '"xformers==0.0.23"')))

    def recorded(variant, settings, scratch: Path, arguments: list[str]) -> subprocess.CompletedProcess[str]:
        assert (scratch / "free.txt").read_text().startswith("certifi=="), "the pins are offered as preferences"
        answer = ["certifi==2099.1.1  # via requests", "numpy==1.26.4  # via xformers", "torch==2.1.1  # via xformers"]
        (scratch / "free.txt").write_text("\n".join([*answer, "xformers==0.0.23  # via -r requirements.in"]) + "\n")
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(project_locks, "uv_compile", recorded)
    message = unresolvable(project, variant, lock, Settings(), "x No solution found")
    assert "torch 2.1.1 (via xformers)" in message and "torch==2.0.1" in message and "certifi" not in message


def test_without_a_moved_pin_uvs_own_last_words_are_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variant = load_matrix().get("cu117")
    lock = read_lock(variant)
    assert lock is not None
    project = load_project(project_folder(tmp_path, GOOD.replace('"numpy<2"', '"no-such-package-here"')))
    monkeypatch.setattr(project_locks, "uv_compile", lambda *args: subprocess.CompletedProcess([], 1, "", "error"))
    message = unresolvable(project, variant, lock, Settings(), "x No solution found\n  ╰─▶ Because no-such-package-here was not found")
    assert message.startswith("uv could not lock my-project on cu117") and "no-such-package-here was not found" in message


def test_the_examples_committed_lock_is_current_and_an_edit_makes_it_stale(tmp_path: Path) -> None:
    variant = load_matrix().get("cu117")
    variant_lock = read_lock(variant)
    assert variant_lock is not None
    project = load_project(EXAMPLE)
    lock = read_project_lock(project, variant)
    assert lock is not None and is_current(lock, project, variant_lock), "run invoke build --variant cu117 --project examples/finetune"
    # None of the variant's own packages is in it: they are the variant's layers.
    assert not set(lock.packages) & set(project_locks.locked_packages(variant_lock))
    copy = shutil.copytree(EXAMPLE, tmp_path / "copy")
    text = (copy / "pyproject.toml").read_text().replace('"peft>=0.10,<0.14",', '"peft>=0.10,<0.14", "tqdm",')
    (copy / "pyproject.toml").write_text(text)
    edited = load_project(copy)
    stale = read_project_lock(edited, variant)
    assert stale is not None and not is_current(stale, edited, variant_lock)


def test_the_project_build_aims_at_the_project_stage_with_its_code_but_not_its_locks(tmp_path: Path) -> None:
    variant = load_matrix().get("cu117")
    variant_lock = read_lock(variant)
    project = load_project(EXAMPLE)
    lock = read_project_lock(project, variant)
    assert variant_lock is not None and lock is not None
    request = project_request(project, variant, Settings(work_dir=tmp_path), "base", variant_lock, lock, "")
    assert request.target == names.PROJECT_STAGE
    code, requirements = request.contexts["project"], request.contexts["project-requirements"]
    assert (code / "src" / "finetune" / "steps.py").exists() and not (code / "locks").exists()
    assert (requirements / "packages" / "requirements.txt").read_text() == lock.path.read_text()
    assert [path.name for path in (requirements / "packages").iterdir()] == ["requirements.txt"], "the packages layer's input is the lock"
    listed = sbom.packages_in(json.loads((requirements / "sbom" / sbom.FILE_NAME).read_text()), "pypi")
    assert listed["peft"] == lock.packages["peft"] and listed["torch"] == "2.0.1", "the project's SBOM lists both locks"
    assert request.labels[Label.PROJECT] == "finetune"
    assert request.labels[Label.PROJECT_LOCK_SHA256] == hashlib.sha256(lock.path.read_bytes()).hexdigest()
    assert request.labels[Label.LOCK_SHA256] == variant_lock.sha256
    assert request.build_args["PROJECT_PYTHONPATH"] == "/opt/project/src"


@pytest.mark.parametrize("failing", ["verify", "python"])
def test_nothing_is_tagged_when_verify_or_the_smoke_command_fails(failing: str) -> None:
    matrix = load_matrix()
    variant = matrix.get("cu117")
    project = load_project(EXAMPLE)
    lock = read_project_lock(project, variant)
    assert lock is not None
    fake = FakeEngine(answers={failing: RunResult(3, "")})
    image = fake.add_image("project")
    with engine.use(fake), pytest.raises(TorchenvError, match=r"exited 3.*nothing was tagged"):
        check_and_tag(image, project, variant, matrix, Settings(), lock)
    assert not fake.tags


def test_a_project_that_passed_is_tagged_by_variant_and_lock() -> None:
    matrix = load_matrix()
    variant = matrix.get("cu117")
    project = load_project(EXAMPLE)
    lock = read_project_lock(project, variant)
    assert lock is not None
    fake = FakeEngine()
    image = fake.add_image("project")
    with engine.use(fake):
        assert check_and_tag(image, project, variant, matrix, Settings(), lock) == "torchenv-finetune:cu117"
    assert set(fake.tags) == {"torchenv-finetune:cu117", "torchenv-finetune:latest", f"torchenv-finetune:cu117-lock-{lock.sha256[:12]}"}
    ran = [call[1][1] for call in fake.calls if call[0] == "run"]
    assert ran == [("verify",), project.smoke]
    assert all(options.hardened for options in fake.run_options)
