"""Prepares what `docker compose run` needs on the host: ./out, and .env saying which
user the containers run as, so that the demo's files belong to whoever invoked it."""

from __future__ import annotations

import os
from pathlib import Path

from torchenv import PROJECT_ROOT

ENV_FILE = PROJECT_ROOT / ".env"
OUT_DIR = PROJECT_ROOT / "out"
MANAGED_KEYS = ("TORCHENV_UID", "TORCHENV_GID")


def user_environment() -> dict[str, str]:
    return {"TORCHENV_UID": str(os.getuid()), "TORCHENV_GID": str(os.getgid())}


def prepare(env_file: Path = ENV_FILE, out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(exist_ok=True)
    kept = []
    if env_file.exists():
        kept = [line for line in env_file.read_text().splitlines() if line.split("=", 1)[0].strip() not in MANAGED_KEYS]
    managed = [f"{key}={value}" for key, value in user_environment().items()]
    env_file.write_text("\n".join(kept + managed) + "\n")
