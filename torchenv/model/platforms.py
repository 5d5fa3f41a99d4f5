"""Target platforms: the host's own, and emulated ones (qemu-user through binfmt_misc)."""

from __future__ import annotations

import platform as host
from pathlib import Path

from torchenv.errors import TorchenvError

AMD64, ARM64 = "linux/amd64", "linux/arm64"
SUPPORTED = (AMD64, ARM64)
# Each platform's machine name (`uname -m`, wheel platform tags, qemu's handler names).
MACHINES = {AMD64: "x86_64", ARM64: "aarch64"}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def host_platform() -> str:
    machine = host.machine().lower()
    aliases = {name: platform for platform, name in MACHINES.items()} | {arch(platform): platform for platform in SUPPORTED}
    return aliases.get(machine, f"linux/{machine}")


def arch(platform: str) -> str:
    """ "linux/arm64" -> "arm64"."""
    return platform.split("/", 1)[1]


def python_platform(platform: str, glibc: str) -> str:
    """uv's name for the wheels a platform with this glibc runs: "x86_64-manylinux_2_36"."""
    return f"{MACHINES[platform]}-manylinux_{glibc.replace('.', '_')}"


def emulation_enabled(platform: str, binfmt_misc: Path = BINFMT_MISC) -> bool:
    """Whether this host runs PLATFORM's binaries, natively or through an enabled qemu handler."""
    if platform == host_platform():
        return True
    handler = binfmt_misc / f"qemu-{MACHINES.get(platform, 'unknown')}"
    return handler.exists() and "enabled" in handler.read_text().splitlines()[0]


def require_runnable(platform: str, binfmt_misc: Path = BINFMT_MISC) -> None:
    """Fails in one line unless this host runs PLATFORM's binaries, natively or emulated."""
    if not emulation_enabled(platform, binfmt_misc):
        handler = f"qemu-{MACHINES.get(platform, 'unknown')}"
        raise TorchenvError(
            f"{platform} binaries cannot run on this {host_platform()} host: no enabled {handler} binfmt_misc handler; "
            "run the task through ./invokew (with --platform linux/arm64 it installs qemu-user-static and binfmt-support "
            "and enables them) or build on a native host"
        )
