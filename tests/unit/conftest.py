"""Helpers for the unit tests: a matrix file written from a dict, and the CLI run for real."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from torchenv.matrix import DEFAULT_MATRIX


def to_toml(value: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for matrix files: scalars, then nested tables."""
    scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in value.items() if isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    for key, item in scalars.items():
        lines.append(f"{key} = {toml_value(item)}")
    for key, item in tables.items():
        name = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)
        lines.append(to_toml(item, f"{prefix}.{name}" if prefix else name))
    return "\n".join(lines) + "\n"


def toml_value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str):
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(item, list):
        return "[" + ", ".join(toml_value(i) for i in item) + "]"
    return repr(item)


@pytest.fixture
def shipped_matrix() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_MATRIX.read_text())


@pytest.fixture
def write_matrix(tmp_path: Path):
    def write(data: dict[str, Any] | str) -> Path:
        path = tmp_path / "matrix.toml"
        path.write_text(data if isinstance(data, str) else to_toml(data))
        return path

    return write
