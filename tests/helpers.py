"""Small helpers shared by test groups."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from torchenv import PROJECT_ROOT, compose


def compose_run(project: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose run --rm COMMAND` with the project's compose.yaml, ./out and .env in
    PROJECT (a temporary directory), as the invoking user."""
    compose.prepare(env_file=project / ".env", out_dir=project / "out")
    return subprocess.run(
        ["docker", "compose", "--file", str(PROJECT_ROOT / "compose.yaml"), "--project-directory", str(project), "run", "--rm", *command],
        capture_output=True,
        text=True,
        env={**os.environ, **compose.user_environment(), **env},
        timeout=600,
    )


def blobs_containing(image: str, needles: list[bytes]) -> list[tuple[str, bytes]]:
    """Every blob of `docker save IMAGE` (each layer's tar, the config, the manifests) that
    holds one of the NEEDLES: a file deleted in a later layer still counts here."""
    longest = max(len(needle) for needle in needles)
    hits = []
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
            for member in archive:
                blob = archive.extractfile(member) if member.isfile() else None
                if blob is None:
                    continue
                found, tail = set(), b""
                while chunk := blob.read(1 << 22):
                    window = tail + chunk
                    found.update(needle for needle in needles if needle in window)
                    tail = window[-longest:]
                hits += [(member.name, needle) for needle in sorted(found)]
    return hits
