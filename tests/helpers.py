"""Small helpers shared by test groups."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from torchenv import PROJECT_ROOT
from torchenv.pipeline import compose

# The zstd level of the tests' pushes to registries on 127.0.0.1: the fastest on 2 cores,
# the same path as the default; its compressed layers are cached (build/zstd-layers) for
# every later push of the same image at it.
ZSTD_LEVEL = 3

# What train prints on each node at the end of a run across processes.
CHECKSUM_LINE = re.compile(r"train: node (\d): final parameter checksums of all (\d+) ranks on (\d) node\(s\) agree: ([0-9a-f]{64})$", re.M)

# Loads two checkpoints and prints how far apart their model tensors are.
COMPARE = """
import json, sys, torch
a, b = (torch.load(path, map_location="cpu")["model"] for path in sys.argv[1:])
print(json.dumps({"keys_equal": sorted(a) == sorted(b),
                  "max_abs_diff": max(float((a[k] - b[k]).abs().max()) for k in a),
                  "bitwise_equal": all(torch.equal(a[k], b[k]) for k in a)}))
"""


def compose_run(project: Path, *command: str, overrides: Sequence[Path] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm COMMAND` with the project's compose.yaml (and OVERRIDES),
    ./out and .env in PROJECT (a temporary directory), as the invoking user."""
    return compose.compose_run(project, *command, overrides=overrides, **env)


def compose_command(project: Path, *args: str, overrides: Sequence[Path] = (), **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` for the project in PROJECT."""
    return compose.compose(project, *args, overrides=overrides, **env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def invoke(*args: str, environment: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """A task through the command surface, as a user runs it: .venv/bin/invoke ARGS."""
    command = [str(Path(sys.executable).with_name("invoke")), *args]
    environ = {**os.environ, **(environment or {})}
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=environ, timeout=timeout)
