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
# What never goes into the code layer: caches and tools' folders wherever they are; at
# the project's top, its locks (already the packages layer), a local run's outputs and an
# .env file (secrets).
NOT_CODE_ANYWHERE = frozenset({"__pycache__", ".git", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
NOT_CODE_AT_TOP = frozenset({LOCK_FOLDER, "out", ".env"})
# Where the project's code lives in its image.
IMAGE_ROOT = "/opt/project"
# A component of an image repository's name: torchenv-<name>.
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
# torchenv's own repositories (torchenv-base, torchenv-repro-base, the bench's) are no project's.
RESERVED = re.compile(r"(?:base|repro|bench|zstd|test)(?:-.*)?")


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
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise TorchenvError(f"{shown}/pyproject.toml is not UTF-8 (byte {error.start}); save it as UTF-8, as TOML requires") from None
    except tomllib.TOMLDecodeError as error:
        raise TorchenvError(f"{shown}/pyproject.toml is not valid TOML: {error}") from None
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise TorchenvError(f"{shown}/pyproject.toml: project must be a table ([project] with name and dependencies)")
    raw_name = project.get("name")
    if not isinstance(raw_name, str) or not raw_name:
        raise TorchenvError(f'{shown}/pyproject.toml has no [project] name; add name = "..." (it names the image)')
    name = re.sub(r"[._]+", "-", raw_name.lower())
    if not NAME.fullmatch(name):
        raise TorchenvError(
            f"{shown}/pyproject.toml: project name {raw_name!r} cannot name an image; use letters, digits and inner '-' (40 at most)"
        )
    if RESERVED.fullmatch(name):
        raise TorchenvError(f"{shown}/pyproject.toml: project name {raw_name!r} is one of torchenv's own image names; choose another")
    dependencies = project.get("dependencies", [])
    extras = project.get("optional-dependencies", {})
    groups = [dependencies, *extras.values()] if isinstance(extras, dict) else [None]
    if not all(isinstance(group, list) and all(isinstance(entry, str) for entry in group) for group in groups):
        raise TorchenvError(f"{shown}/pyproject.toml: [project] dependencies and optional-dependencies must list requirement strings")
    tool = data.get("tool", {})
    settings = tool.get("torchenv", {}) if isinstance(tool, dict) else None
    if not isinstance(settings, dict):
        raise TorchenvError(f"{shown}/pyproject.toml: tool.torchenv must be a table ([tool.torchenv] with smoke = [...])")
    smoke = settings.get("smoke", [])
    if not isinstance(smoke, list) or not smoke or not all(isinstance(part, str) for part in smoke):
        raise TorchenvError(
            f"{shown}/pyproject.toml: [tool.torchenv] smoke must be the command (a list of strings) that proves the project "
            'runs, e.g. smoke = ["python", "-m", "mypackage", "--help"]'
        )
    python_path = settings.get("python-path", ["src"] if (folder / "src").is_dir() else ["."])
    if not isinstance(python_path, list) or not python_path:
        raise TorchenvError(f'{shown}/pyproject.toml: python-path must list the folders to import from, e.g. python-path = ["src"]')
    for part in python_path:
        if not inside(folder, part):
            raise TorchenvError(f"{shown}/pyproject.toml: python-path entry {part!r} is not a folder inside the project")
    tests = settings.get("tests")
    if tests is not None and not inside(folder, tests):
        raise TorchenvError(f"{shown}/pyproject.toml: tests = {tests!r} is not a folder inside the project")
    return Project(
        root=folder.resolve(),
        name=name,
        dependencies=tuple(dependencies),
        extra_dependencies=tuple(requirement for group in sorted(extras) for requirement in extras[group]),
        smoke=tuple(smoke),
        python_path=tuple(python_path),
        tests=tests,
    )


def inside(folder: Path, part: object) -> bool:
    """Whether PART names a folder inside FOLDER (relative, no way out)."""
    return isinstance(part, str) and not part.startswith("/") and ".." not in Path(part).parts and (folder / part).is_dir()


def image_repository(image_name: str, project: Project) -> str:
    """Where a project's images are tagged: torchenv-finetune:cu117 beside torchenv:cu117."""
    return f"{image_name}-{project.name}"
