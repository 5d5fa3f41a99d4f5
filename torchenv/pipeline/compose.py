"""What `docker compose run` needs on the host (./out, and .env saying which user the
containers run as, so that the demo's files belong to whoever invoked it), and the runs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from torchenv import PROJECT_ROOT, engine, statefiles
from torchenv.model.settings import Settings

COMPOSE_FILE = PROJECT_ROOT / "compose.yaml"
ENV_FILE = PROJECT_ROOT / ".env"
OUT_DIR = PROJECT_ROOT / "out"
MANAGED_KEYS = ("TORCHENV_UID", "TORCHENV_GID", "TORCHENV_SHM_SIZE")


def user_environment(settings: Settings | None = None) -> dict[str, str]:
    """Who the services run as, and their /dev/shm (the shm_size setting: TORCHENV_SHM_SIZE
    in the environment or invoke.yaml; else half this machine's memory)."""
    return {
        "TORCHENV_UID": str(os.getuid()),
        "TORCHENV_GID": str(os.getgid()),
        "TORCHENV_SHM_SIZE": (settings or Settings.load()).container_shm_size(),
    }


def prepare(env_file: Path = ENV_FILE, out_dir: Path = OUT_DIR, settings: Settings | None = None) -> None:
    """./out, and .env with the managed keys (the user's other lines stay)."""
    out_dir.mkdir(exist_ok=True)
    kept = []
    if env_file.exists():
        kept = [line for line in env_file.read_text().splitlines() if line.split("=", 1)[0].strip() not in MANAGED_KEYS]
    managed = [f"{key}={value}" for key, value in user_environment(settings).items()]
    statefiles.write_text(env_file, "\n".join(kept + managed) + "\n")


def compose(
    project: Path,
    *args: str,
    capture: bool = True,
    timeout: float | None = 900,
    settings: Settings | None = None,
    overrides: Sequence[Path] = (),
    **environment: str,
) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` with the project's compose.yaml (merged with OVERRIDES), for the
    project directory PROJECT (./out and .env there), as the invoking user."""
    env: Mapping[str, str] = {**user_environment(settings), **environment}
    return engine.get().compose(args, project, [COMPOSE_FILE, *overrides], env, capture=capture, timeout=timeout)


def compose_run(
    project: Path, *command: str, capture: bool = True, overrides: Sequence[Path] = (), **environment: str
) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm COMMAND` in PROJECT, prepared first."""
    prepare(env_file=project / ".env", out_dir=project / "out")
    return compose(project, "run", "--rm", *command, capture=capture, overrides=overrides, **environment)
