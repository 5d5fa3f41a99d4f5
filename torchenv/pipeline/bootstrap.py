"""Making a base's root filesystem with mmdebstrap: on the host where it is installed, or
else inside a container, so that any host with a Docker engine (macOS, Windows, a Linux
without mmdebstrap) can make the base. Both run the same command with the same inputs and
SOURCE_DATE_EPOCH, and give the same tarball."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model import names, platforms
from torchenv.model.names import Label
from torchenv.model.settings import Settings

# The mmdebstrap a container installs (bookworm's): another version makes another tarball.
MMDEBSTRAP_VERSION = "1.3.5-7"
UPSTREAM_VERSION = MMDEBSTRAP_VERSION.split("-")[0]
# The suite whose apt has that mmdebstrap: a torchenv base of it can run it.
MAKER_SUITE = "bookworm"
# Where no torchenv base is present yet to run it in: Debian's own image, by digest (two
# public Dockerfiles pin this bookworm-slim index).
DEBIAN_IMAGE = "debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818"
MAKERS = ("auto", "host", "container")
# The container's own mount point for the output (a fresh directory on the host).
OUTPUT = "/out"
SCRIPT = "make-rootfs.sh"
BINFMT = "/proc/sys/fs/binfmt_misc"
MAKE_TIMEOUT_S = 1800
# mmdebstrap's environment is the same wherever it runs, and no more than this: the
# caller's own variables would reach the maintainer scripts (PYTHONDONTWRITEBYTECODE
# decides whether importing debpython writes timestamped .pyc files before py3compile
# writes hash-checked ones). The search path and proxies pass through (into the
# container too): they change no byte of the result.
ENVIRONMENT = {"PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
PASSED_THROUGH = ("PATH", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def environment(epoch: int) -> dict[str, str]:
    """mmdebstrap's environment on the host."""
    passed = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {**passed, **ENVIRONMENT, "SOURCE_DATE_EPOCH": str(epoch)}


def shell_environment(epoch: int) -> str:
    """The same for `env -i` in a container's shell: its own PATH and proxies, if set."""
    fixed = [f"{name}={value}" for name, value in {**ENVIRONMENT, "SOURCE_DATE_EPOCH": str(epoch)}.items()]
    # An unset variable gives no word at all, a set one exactly one.
    passed = [f'${{{name}+"{name}=${name}"}}' for name in PASSED_THROUGH]
    return " ".join([shlex.join(fixed), *passed])


@dataclass(frozen=True)
class RootfsSpec:
    """What mmdebstrap is asked to make (torchenv/pipeline/base.py defines the base's)."""

    suite: str
    platform: str
    packages: tuple[str, ...]
    dpkg_options: tuple[str, ...]
    hooks: tuple[str, ...]


def mmdebstrap_command(spec: RootfsSpec, settings: Settings, rootfs: str) -> list[str]:
    """The one mmdebstrap command line, wherever it runs."""
    command = ["mmdebstrap", "--variant=apt", "--quiet", "--format=tar", f"--architectures={platforms.arch(spec.platform)}"]
    command += ["--include=" + ",".join(spec.packages)]
    command += [f"--dpkgopt={option}" for option in spec.dpkg_options]
    command += [f"--customize-hook={hook}" for hook in spec.hooks]
    if settings.debian_snapshot:
        # A snapshot's Release files are past their Valid-Until date by design.
        command += ['--aptopt=Acquire::Check-Valid-Until "false"']
    return command + [spec.suite, rootfs] + ([settings.debian_mirror] if settings.debian_mirror else [])


def maker(settings: Settings) -> str:
    """Where mmdebstrap runs: "host" or "container". Left to itself, the host's mmdebstrap
    where it is the pinned version, so that every machine makes the same base."""
    if settings.base_maker not in MAKERS:
        raise TorchenvError(f"base_maker (TORCHENV_BASE_MAKER) is {settings.base_maker!r}; use one of: {', '.join(MAKERS)}")
    if settings.base_maker != "auto":
        return settings.base_maker
    return "host" if host_version() == UPSTREAM_VERSION else "container"


def host_version() -> str | None:
    """The host's mmdebstrap version ("1.3.5"), or None where it has none."""
    program = shutil.which("mmdebstrap")
    if program is None:
        return None
    try:
        shown = subprocess.run([program, "--version"], capture_output=True, text=True)
    except OSError:
        return None
    return shown.stdout.split()[-1] if shown.returncode == 0 and shown.stdout.split() else None


def make_rootfs(spec: RootfsSpec, settings: Settings, rootfs: Path, epoch: int) -> str:
    """Writes SPEC's root filesystem to the tarball ROOTFS where `maker` says; returns where."""
    where = maker(settings)
    if where == "host":
        if shutil.which("mmdebstrap") is None:
            raise TorchenvError(
                "mmdebstrap is not installed (TORCHENV_BASE_MAKER=host); install it (`sudo apt-get install mmdebstrap`) "
                "or unset TORCHENV_BASE_MAKER to make the base in a container"
            )
        command = mmdebstrap_command(spec, settings, str(rootfs))
        made = subprocess.run(command, env=environment(epoch), capture_output=True, text=True)
        if made.returncode != 0:
            raise TorchenvError(f"mmdebstrap could not make the {spec.suite} base: {engine.last_line(made.stderr)}")
    else:
        in_container(spec, settings, rootfs, epoch)
    return where


def in_container(spec: RootfsSpec, settings: Settings, rootfs: Path, epoch: int) -> None:
    """mmdebstrap in a throwaway container of the engine's own platform: it installs the
    pinned mmdebstrap from Debian's archive and writes the tarball into ROOTFS's directory."""
    native = platforms.host_platform()
    image = maker_image(native)
    command = mmdebstrap_command(spec, settings, f"{OUTPUT}/{rootfs.name}")
    # A base from a snapshot archive lists it as its apt source: past Valid-Until by design.
    update = "apt-get update -qq" + (" -o Acquire::Check-Valid-Until=false" if settings.debian_snapshot else "")
    (rootfs.parent / SCRIPT).write_text(
        "set -eu\n"
        "export DEBIAN_FRONTEND=noninteractive\n"
        f"{update}\n"
        # `mount`: mmdebstrap's root mode mounts /proc and /dev inside the new root;
        # arch-test: it checks with it that another architecture can run.
        f"apt-get install -y -qq --no-install-recommends mmdebstrap={MMDEBSTRAP_VERSION} mount arch-test >/dev/null\n"
        # The host's emulators (binfmt_misc, with the F flag) serve the container too, once
        # it is mounted there: mmdebstrap looks for them to run another architecture.
        + ("" if spec.platform == native else f"mountpoint -q {BINFMT} || mount -t binfmt_misc binfmt_misc {BINFMT}\n")
        + f"exec env -i {shell_environment(epoch)} {shlex.join(command)}\n"
    )
    print(f"torchenv: {container_reason(settings)}: making the {spec.suite} base in a container of {image[:60]}", flush=True)
    options = RunOptions(
        # The engine's own platform: mmdebstrap makes another architecture's root through
        # emulation (binfmt_misc), as it does on a host.
        platform=native,
        hardened=False,  # it downloads from Debian's archive and mounts inside its new root
        privileged=True,
        volumes={str(rootfs.parent): (OUTPUT, "rw")},
        environment={name: os.environ[name] for name in PASSED_THROUGH if name != "PATH" and name in os.environ},
    )
    result = engine.get().run(image, ["sh", f"{OUTPUT}/{SCRIPT}"], options, timeout=MAKE_TIMEOUT_S)
    if result.exit_code != 0 or not rootfs.is_file():
        reason = engine.last_line(result.stderr) or engine.last_line(result.stdout) or f"exit {result.exit_code}"
        raise TorchenvError(f"mmdebstrap in a container of {image[:60]} could not make the {spec.suite} base: {reason}")


def container_reason(settings: Settings) -> str:
    if settings.base_maker == "container":
        return "TORCHENV_BASE_MAKER=container"
    found = host_version()
    return "no mmdebstrap on this host" if found is None else f"the host's mmdebstrap is {found}, not {UPSTREAM_VERSION}"


def maker_image(platform: str) -> str:
    """A torchenv bookworm base of this host's PLATFORM already here (no registry needed),
    else Debian's image: bookworm's apt has the pinned mmdebstrap (bullseye's has 0.7)."""
    docker = engine.get()
    candidates = []
    for image_id in docker.image_ids({"reference": names.BASE_REPOSITORY}):
        facts = docker.image(image_id)
        if facts is not None and facts.platform == platform and facts.labels.get(Label.BASE) == MAKER_SUITE:
            candidates.append((facts.created, image_id))
    if candidates:
        return max(candidates)[1]
    if docker.image_id(DEBIAN_IMAGE):
        return DEBIAN_IMAGE
    try:
        docker.pull(DEBIAN_IMAGE, platform=platform)
    except TorchenvError as error:
        raise TorchenvError(
            f"no torchenv base here to run mmdebstrap in, and {error}; install mmdebstrap {UPSTREAM_VERSION} on the host, "
            "or let the engine reach a registry once (it pulls Debian's image by digest)"
        ) from None
    return DEBIAN_IMAGE
