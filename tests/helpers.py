"""Small helpers shared by test groups."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from torchenv import PROJECT_ROOT, compose


def compose_run(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm COMMAND` with the project's compose.yaml, ./out and .env in
    PROJECT (a temporary directory), as the invoking user."""
    compose.prepare(env_file=project / ".env", out_dir=project / "out")
    return compose_command(project, "run", "--rm", *command, **env)


def compose_command(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` for the project in PROJECT."""
    return subprocess.run(
        ["docker", "compose", "--file", str(PROJECT_ROOT / "compose.yaml"), "--project-directory", str(project), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **compose.user_environment(), **env},
        timeout=900,
    )
