"""A user project: a folder with a pyproject.toml that declares its dependencies and, in
[tool.torchenv], how torchenv checks and runs it. Pure parsing, no I/O beyond reading it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from torchenv import display_path
from torchenv.errors import TorchenvError

# Where the project's locks live, one per variant, inside the project (committed with it).
LOCK_FOLDER = "locks"
# What never goes into the code layer: the locks (already the packages layer), caches and
# the outputs of a local run.
NOT_CODE = frozenset({LOCK_FOLDER, "__pycache__", ".git", ".venv", "out", ".pytest_cache", ".ruff_cache"})
# Where the project's code lives in its image.
IMAGE_ROOT = "/opt/project"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class Project:
    root: Path
    # As a tag component: lower case, "-" for "_" and ".".
    name: str
    dependencies: tuple[str, ...]
    # Every optional dependency group's requirements (tests' tools, say): locked and installed too.
    extra_dependencies: tuple[str, ...]
    smoke: tuple[str, ...]
    python_path: tuple[str, ...]
    tests: str | None

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"

    @property
    def requirements(self) -> tuple[str, ...]:
        """What its lock resolves: its dependencies and every optional group's."""
        return (*self.dependencies, *self.extra_dependencies)

    @property
    def image_python_path(self) -> str:
        return ":".join(str(PurePosixPath(IMAGE_ROOT, part)) for part in self.python_path)


def load_project(folder: Path) -> Project:
    """The project in FOLDER; a folder that is not one fails in one line saying what to add."""
    shown = display_path(folder.resolve()) if folder.exists() else str(folder)
    if not folder.is_dir():
        raise TorchenvError(f"--project {shown}: no such folder; give the folder that holds your project's pyproject.toml")
    path = folder / "pyproject.toml"
    if not path.is_file():
        raise TorchenvError(
            f"--project {shown}: no pyproject.toml there; add one with [project] name and dependencies (see docs/projects.md)"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise TorchenvError(f"{shown}/pyproject.toml is not valid TOML: {error}") from None
    project = data.get("project") or {}
    raw_name = project.get("name")
    if not isinstance(raw_name, str) or not raw_name:
        raise TorchenvError(f'{shown}/pyproject.toml has no [project] name; add name = "..." (it names the image)')
    name = re.sub(r"[._]+", "-", raw_name.lower())
    if not NAME.match(name):
        raise TorchenvError(
            f"{shown}/pyproject.toml: project name {raw_name!r} cannot name an image; use letters, digits, '-' (40 at most)"
        )
    dependencies = project.get("dependencies", [])
    extras = project.get("optional-dependencies", {})
    groups = [dependencies, *extras.values()] if isinstance(extras, dict) else [None]
    if not all(isinstance(group, list) and all(isinstance(entry, str) for entry in group) for group in groups):
        raise TorchenvError(f"{shown}/pyproject.toml: [project] dependencies and optional-dependencies must list requirement strings")
    settings = data.get("tool", {}).get("torchenv", {})
    smoke = settings.get("smoke", [])
    if not isinstance(smoke, list) or not smoke or not all(isinstance(part, str) for part in smoke):
        raise TorchenvError(
            f"{shown}/pyproject.toml: [tool.torchenv] smoke must be the command (a list of strings) that proves the project "
            'runs, e.g. smoke = ["python", "-m", "mypackage", "--help"]'
        )
    python_path = settings.get("python-path", ["src"] if (folder / "src").is_dir() else ["."])
    for part in python_path:
        if not isinstance(part, str) or part.startswith("/") or ".." in Path(part).parts or not (folder / part).is_dir():
            raise TorchenvError(f"{shown}/pyproject.toml: python-path entry {part!r} is not a folder inside the project")
    tests = settings.get("tests")
    if tests is not None and not (folder / tests).is_dir():
        raise TorchenvError(f"{shown}/pyproject.toml: tests = {tests!r}, but the project has no such folder")
    return Project(
        root=folder.resolve(),
        name=name,
        dependencies=tuple(dependencies),
        extra_dependencies=tuple(requirement for group in sorted(extras) for requirement in extras[group]),
        smoke=tuple(smoke),
        python_path=tuple(python_path),
        tests=tests,
    )


def image_repository(image_name: str, project: Project) -> str:
    """Where a project's images are tagged: torchenv-finetune:cu117 beside torchenv:cu117."""
    return f"{image_name}-{project.name}"
