"""The host tools are declared in pyproject.toml and locked, with hashes, in requirements-dev.txt."""

from __future__ import annotations

from torchenv.commands import host_tools


def test_every_declared_tool_is_locked_at_its_version_with_hashes() -> None:
    declared, locked = host_tools.declared(), host_tools.locked()
    assert {"docker", "invoke", "pytest", "pytest-testinfra", "uv"} <= set(declared)
    for name, version in declared.items():
        assert version, f"{name} is declared without a pinned version"
        assert name in locked, f"{name} is declared in pyproject.toml but not locked; run: invoke lock-tools"
        assert locked[name][0] == version, f"{name}: declared {version}, locked {locked[name][0]}; run: invoke lock-tools"
    assert all(hashes >= 1 for _, hashes in locked.values())


def test_the_lock_names_the_command_that_made_it() -> None:
    command = host_tools.lock_command()
    assert command[1:3] == ["pip", "compile"] and "--generate-hashes" in command
    assert " ".join(["uv", *command[1:]]) in host_tools.LOCK.read_text()
