"""Small helpers shared by test groups."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from torchenv.pipeline import compose


def compose_run(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm COMMAND` with the project's compose.yaml, ./out and .env in
    PROJECT (a temporary directory), as the invoking user."""
    return compose.compose_run(project, *command, **env)


def compose_command(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` for the project in PROJECT."""
    return compose.compose(project, *args, **env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
