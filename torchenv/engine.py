"""The Docker CLI, called as a subprocess; failures become one-line TorchenvErrors."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from torchenv.errors import TorchenvError


def docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `docker ARGS`, capturing output."""
    if shutil.which("docker") is None:
        raise TorchenvError("the docker CLI is not on PATH; run ./invokew (it installs the engine) or install Docker Engine >= 23")
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise TorchenvError(f"docker {args[0]} failed: {last_line(result.stderr) or last_line(result.stdout)}")
    return result


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def require_engine() -> None:
    """Fails in one line unless the daemon answers and buildx is there."""
    info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    if info.returncode != 0 or not info.stdout.strip():
        raise TorchenvError(
            "the Docker daemon does not answer on /var/run/docker.sock (or DOCKER_HOST); "
            "start it (./invokew starts it, or `sudo systemctl start docker`) and retry"
        )
    if docker("buildx", "version", check=False).returncode != 0:
        raise TorchenvError("docker buildx is missing; install the docker-buildx package (./invokew does) and retry")


def require_free_space(needed_gb: float, what: str) -> None:
    """Fails in one line when the engine's data root has less free space than a build needs."""
    root = docker("info", "--format", "{{.DockerRootDir}}", check=False).stdout.strip()
    if not root or not Path(root).exists():
        return  # a remote engine: its disk is not ours to measure
    free_gb = shutil.disk_usage(root).free / 1e9
    if free_gb < needed_gb:
        raise TorchenvError(
            f"only {free_gb:.1f} GB free on {root} (Docker's data root); {what} needs about {needed_gb:.0f} GB: "
            "free space (invoke clean removes torchenv's images and cache) or set TORCHENV_MIN_FREE_GB"
        )


def image_id(reference: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def image_labels(reference: str) -> dict[str, str]:
    result = docker("image", "inspect", "--format", "{{json .Config.Labels}}", reference)
    return json.loads(result.stdout) or {}


def image_ids(*filters: str) -> set[str]:
    """IDs of the images that match every `docker image ls` filter, untagged ones included."""
    args = [arg for item in filters for arg in ("--filter", item)]
    return set(docker("image", "ls", "--all", "--quiet", "--no-trunc", *args).stdout.split())


def build_cache_ids(mentioning: str) -> list[str]:
    """IDs of BuildKit cache records whose description mentions a word."""
    listing = docker("buildx", "du", "--verbose").stdout
    records = [dict(_field(line) for line in block.splitlines() if ":" in line) for block in listing.split("\n\n")]
    return [record["ID"] for record in records if "ID" in record and mentioning in record.get("Description", "")]


def build_records_since(before: set[str]) -> set[str]:
    """Build cache records made since BEFORE (a set of IDs), but not cache mounts: those get a
    new record each time a step uses them, and hold the downloads later builds reuse."""
    return set(build_cache_ids("")) - before - set(build_cache_ids("cached mount "))


def _field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def prune_build_cache(record_id: str) -> None:
    # One call per record: the engine takes each filter key once only. A record still in
    # use is left alone.
    docker("builder", "prune", "--all", "--force", "--filter", f"id={record_id}", check=False)


def tag(source: str, target: str) -> None:
    docker("tag", source, target)


def run_args(
    image: str, command: Sequence[str], *, hardened: bool = True, extra: Sequence[str] = (), platform: str | None = None
) -> list[str]:
    """`docker run` arguments for a throwaway container as torchenv runs its images:
    offline, read-only, no capabilities; /tmp is an exec tmpfs for torch.compile.
    EXTRA flags go before the image; PLATFORM names an emulated image's platform."""
    flags = ["run", "--rm", *extra, *(["--platform", platform] if platform else [])]
    if hardened:
        flags += [
            "--network", "none",
            "--read-only", "--tmpfs", "/tmp:exec,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        ]  # fmt: skip
    return [*flags, image, *command]
