"""The host tools torchenv runs with: declared in pyproject.toml, locked with hashes in
requirements-dev.txt by the command pyproject.toml names ([tool.torchenv] lock-tools)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from torchenv import PROJECT_ROOT
from torchenv.locking.locks import uv_executable

PYPROJECT = PROJECT_ROOT / "pyproject.toml"
LOCK = PROJECT_ROOT / "requirements-dev.txt"


def declared(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """name -> pinned version of every declared host tool (dependencies and groups)."""
    data = tomllib.loads(pyproject.read_text())
    requirements = list(data["project"].get("dependencies", []))
    for group in data.get("dependency-groups", {}).values():
        requirements += group
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        # "cyclonedx-python-lib[json-validation]": the extras are no part of the name.
        pins[name.split("[")[0].strip().lower()] = version.strip()
    return pins


def locked(lock: Path = LOCK) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) in the lock."""
    found = {}
    for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)((?:\s*\\\s*--hash=sha256:[0-9a-f]{64})+)", lock.read_text(), re.M):
        found[match[1].lower()] = (match[2], match[3].count("--hash="))
    return found


def lock_command(pyproject: Path = PYPROJECT) -> list[str]:
    command = shlex.split(tomllib.loads(pyproject.read_text())["tool"]["torchenv"]["lock-tools"])
    return [uv_executable(), *command[1:]] if command[0] == "uv" else command
