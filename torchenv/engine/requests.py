"""What torchenv asks of the container engine, as typed values: a build, a container run.
Pure data, no I/O: the engine carries them out, a test fake records them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BuildRequest:
    """One BuildKit build (a variant, a base, a repro or bench build): the single place a
    `docker buildx build` command line is assembled."""

    context: Path
    platform: str
    dockerfile: Path | None = None
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    # Named contexts (`--build-context NAME=PATH`), e.g. the requirements of a variant.
    contexts: Mapping[str, Path] = field(default_factory=dict)
    # BuildKit secrets (`--secret id=ID,src=PATH`): visible to a RUN step, never to a layer.
    secrets: Mapping[str, Path] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # Runs every step again; BuildKit then also gives the steps empty cache mounts.
    no_cache: bool = False
    # Runs these stages' steps again, the rest from the cache (`--no-cache-filter`).
    no_cache_stages: tuple[str, ...] = ()
    progress: str = "plain"
    # The RUN steps' network: None is the engine's default (a bridge); "host" reaches this
    # machine's loopback (a mirror on 127.0.0.1).
    network: str | None = None

    def command(self, iidfile: Path) -> list[str]:
        command = ["docker", "buildx", "build", "--iidfile", str(iidfile), "--progress", self.progress, "--platform", self.platform]
        command += ["--file", str(self.dockerfile)] if self.dockerfile else []
        command += ["--target", self.target] if self.target else []
        command += ["--no-cache"] if self.no_cache else []
        for stage in self.no_cache_stages:
            command += ["--no-cache-filter", stage]
        command += ["--network", self.network] if self.network else []
        for name, path in self.contexts.items():
            command += ["--build-context", f"{name}={path}"]
        for secret_id, path in self.secrets.items():
            command += ["--secret", f"id={secret_id},src={path}"]
        for name, value in self.build_args.items():
            command += ["--build-arg", f"{name}={value}"]
        for name, value in self.labels.items():
            command += ["--label", f"{name}={value}"]
        for tag in self.tags:
            command += ["--tag", tag]
        return [*command, str(self.context)]


@dataclass(frozen=True)
class BuildResult:
    returncode: int
    # The image built, or None when the build failed.
    image_id: str | None
    # The last lines of BuildKit's output, step prefixes removed: where a failure's reason is.
    tail: tuple[str, ...] = ()


# How torchenv runs its images unless told otherwise: offline, read-only, no capabilities;
# /tmp is an exec tmpfs since torch.compile writes and loads code there.
HARDENED_TMPFS = {"/tmp": "exec,mode=1777"}


@dataclass(frozen=True)
class RunOptions:
    """A container run. The defaults are the hardened way torchenv runs its images."""

    platform: str | None = None
    hardened: bool = True
    user: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    # host path -> (container path, mode "ro" or "rw")
    volumes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    # `--gpus` as Docker spells it: "all", a count, or "device=0,1".
    gpus: str | None = None
    entrypoint: str | None = None
    # All capabilities and devices: only for torchenv's own tools (mmdebstrap making a
    # base mounts /proc and /dev inside its new root), never for an image's commands.
    privileged: bool = False
    # The size of /dev/shm ("12g"), where DataLoader workers hand over their batches;
    # None: the engine's 64 MB.
    shm_size: str | None = None
    # The hardened run's tmpfs mounts, path -> options; Docker's own default for a bare
    # `--tmpfs /tmp` is noexec, where torch cannot load what it compiles.
    tmpfs: Mapping[str, str] = field(default_factory=lambda: dict(HARDENED_TMPFS))

    def cli_flags(self) -> list[str]:
        """The same run as `docker run` flags (for an interactive run, which needs the CLI's TTY)."""
        flags = ["--platform", self.platform] if self.platform else []
        if self.hardened:
            flags += ["--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
            flags += [flag for path, mode in self.tmpfs.items() for flag in ("--tmpfs", f"{path}:{mode}")]
        flags += ["--user", self.user] if self.user else []
        flags += [flag for key, value in self.environment.items() for flag in ("--env", f"{key}={value}")]
        flags += [flag for host, (inside, mode) in self.volumes.items() for flag in ("--volume", f"{host}:{inside}:{mode}")]
        flags += [flag for key, value in self.labels.items() for flag in ("--label", f"{key}={value}")]
        flags += ["--name", self.name] if self.name else []
        # The CLI reads --gpus as CSV: a device list must be quoted to stay one field.
        gpus = f'"{self.gpus}"' if self.gpus and "," in self.gpus and not self.gpus.startswith('"') else self.gpus
        flags += ["--gpus", gpus] if gpus else []
        flags += ["--entrypoint", self.entrypoint] if self.entrypoint else []
        flags += ["--privileged"] if self.privileged else []
        flags += ["--shm-size", self.shm_size] if self.shm_size else []
        return flags


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    # stdout and stderr as one text (the container's log), unless the run streamed it.
    output: str
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class ImageFacts:
    """What the engine knows of one local image, from a single inspect."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    # Uncompressed layer digests (diff IDs), base first.
    layers: tuple[str, ...]
    user: str
    created: str
    os: str
    architecture: str
    size: int
    repo_digests: tuple[str, ...]
    # The image's whole config (Env, Cmd, Labels, ...), as the engine reports it.
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}"


@dataclass(frozen=True)
class CacheRecord:
    """One BuildKit cache record, as `docker system df` lists it."""

    id: str
    description: str
    in_use: bool = False
