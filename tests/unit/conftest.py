"""Helpers for the unit tests: a matrix file written from a dict; and the tier's guards:
no unit test reaches Docker (the engine is replaced by one that refuses) or any address
off this machine."""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchenv import engine
from torchenv.model.matrix import DEFAULT_MATRIX


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


class NoEngine:
    """Stands in for the engine in the unit tier: any use of it is a bug in the test."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"a unit test used the container engine ({name}); use tests/unit/fake_engine.py")


@pytest.fixture(autouse=True)
def no_container_engine() -> Iterator[None]:
    with engine.use(NoEngine()):
        yield


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections go to loopback addresses only (servers a test starts itself)."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else str(address)
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise AssertionError(f"a unit test reached the network ({host}); unit tests stay on this machine")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
