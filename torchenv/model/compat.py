"""What PyTorch actually released: the data every matrix entry is checked against.

Sources: PyTorch's release notes and wheel metadata, NVIDIA's driver compatibility
tables (see ../shared/FACTS.md when working on torchenv itself).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TorchRelease:
    torchvision: str
    torchaudio: str
    # CUDA versions with an official build; "none" is the CPU-only build.
    builds: tuple[str, ...]
    # The build PyPI serves for Linux x86_64 (no local version label).
    pypi_build: str
    python_min: tuple[int, int]
    python_max: tuple[int, int]
    # Pins the PyPI build needs beyond its own metadata.
    pypi_extra_pins: tuple[str, ...] = ()


# What every torch-2.0-era package assumes a venv has, and so every variant's lock holds:
# setuptools with pkg_resources (torch 2.0/2.1's torch.utils.cpp_extension imports
# `packaging` from it, which setuptools 70 stopped exporting; lightning_fabric declares its
# namespace with it; setuptools 81 removed pkg_resources), wheel, and ninja (PyPI's wheel),
# without which cpp_extension builds nothing (custom ops, DeepSpeed's ops).
BUILD_TOOL_PINS = ("setuptools>=64,<70", "wheel", "ninja")

# torch 2.1's nvidia-cusparse-cu12 asks for nvidia-nvjitlink-cu12 without a version, so a
# resolver takes the newest 12.x; the one released with CUDA 12.1 is what torch was tested with.
NVJITLINK_12_1 = ("nvidia-nvjitlink-cu12==12.1.105",)

TORCH_RELEASES: dict[str, TorchRelease] = {
    "2.0.0": TorchRelease("0.15.1", "2.0.1", ("none", "11.7", "11.8"), "11.7", (3, 8), (3, 11)),
    "2.0.1": TorchRelease("0.15.2", "2.0.2", ("none", "11.7", "11.8"), "11.7", (3, 8), (3, 11)),
    "2.1.0": TorchRelease("0.16.0", "2.1.0", ("none", "11.8", "12.1"), "12.1", (3, 8), (3, 11), NVJITLINK_12_1),
    "2.1.1": TorchRelease("0.16.1", "2.1.1", ("none", "11.8", "12.1"), "12.1", (3, 8), (3, 11), NVJITLINK_12_1),
    "2.1.2": TorchRelease("0.16.2", "2.1.2", ("none", "11.8", "12.1"), "12.1", (3, 8), (3, 11), NVJITLINK_12_1),
}

# PyPI's torch for Linux aarch64 is the CPU-only build; for x86_64 it is the release's
# pypi_build. PyTorch 2.0/2.1 made CUDA wheels for x86_64 only.
CUDA_PLATFORMS = ("linux/amd64",)


def pypi_build(release: TorchRelease, platform: str) -> str:
    return CPU_ONLY if platform == "linux/arm64" else release.pypi_build


# Minimum Linux driver for a CUDA major version (minor-version compatibility).
MIN_DRIVER_BY_CUDA_MAJOR: dict[str, str] = {"11": "450.80.02", "12": "525.60.13"}

# The Python that each Debian suite ships, for bases made by mmdebstrap.
DEBIAN_PYTHON: dict[str, str] = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
# Each Debian suite's glibc: a lock holds only wheels whose manylinux tag it runs.
DEBIAN_GLIBC: dict[str, str] = {"bullseye": "2.31", "bookworm": "2.36", "trixie": "2.41"}
# For an upstream base that names no Debian suite: manylinux_2_28, which PyTorch's own
# wheels of these releases need anyway.
FALLBACK_GLIBC = "2.28"


def glibc_of_base(base: str) -> str:
    """The glibc a base image has, as far as its name says: mmdebstrap:bookworm, or an
    upstream reference such as python:3.10-slim-bookworm@sha256:..."""
    name = base.split("@", 1)[0]
    return next((glibc for suite, glibc in DEBIAN_GLIBC.items() if suite in name), FALLBACK_GLIBC)


# The `cuda` of a CPU-only build.
CPU_ONLY = "none"

# Wheel sources: "pypi", or the PyTorch index channel named after the build.
PYPI = "pypi"
PYTORCH_PREFIX = "pytorch-"
# What a "pytorch-<channel>" variant takes from the PyTorch index (the packages whose build
# the channel names); their dependencies come from PyPI, as uv's PyTorch guide does it.
PYTORCH_INDEX_PACKAGES = frozenset({"torch", "torchvision", "torchaudio"})
# What a project on top of a variant most often tries to move, and must not: named first
# when a project's lock is refused.
CORE_PACKAGES = PYTORCH_INDEX_PACKAGES | {"numpy", "triton"}


def is_core_package(name: str) -> bool:
    return name in CORE_PACKAGES or name.startswith("nvidia-")


def channel_for_build(cuda: str) -> str:
    """The PyTorch index channel (and local version label) of a build: cpu, cu118, ..."""
    return "cpu" if cuda == CPU_ONLY else "cu" + cuda.replace(".", "")


# The GPU code each official CUDA build carries, by torch line and CUDA version, as
# `torch._C._cuda_getArchFlags()` reads it in the built image (the build gate checks it and
# the image's label records it). PyTorch's wheel builds set these lists: the CUDA 12
# builds dropped Kepler, and only the CUDA 11.8 and 12.x builds have Hopper (sm_90) code.
GPU_ARCHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("2.0", "11.7"): ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86"),
    ("2.0", "11.8"): ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    ("2.1", "11.8"): ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    ("2.1", "12.1"): ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
}


def gpu_archs(torch_release: str, cuda: str) -> tuple[str, ...]:
    """The GPU architectures of the official build of TORCH_RELEASE for CUDA; () for CPU-only."""
    if cuda == CPU_ONLY:
        return ()
    line = ".".join(torch_release.split(".")[:2])
    return GPU_ARCHS[(line, cuda)]


def min_driver(cuda: str) -> str | None:
    if cuda == CPU_ONLY:
        return None
    return MIN_DRIVER_BY_CUDA_MAJOR[cuda.split(".")[0]]
