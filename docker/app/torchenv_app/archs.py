"""Which GPUs a torch build's compiled code runs on. Plain Python, no torch: `verify` and
`train` use it inside the image, torchenv's docs and tests outside it.

A GPU of compute capability X.Y runs a kernel compiled for sm_XV with V <= Y (sm_86 code
runs on an sm_89 GPU), and PTX (compute_XY) of any lower or equal capability, which the
driver compiles for it. A higher major version (sm_90) needs code of its own or PTX.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Capability = tuple[int, int]

# The compute capabilities of NVIDIA's GPU generations, oldest first.
GENERATIONS: tuple[tuple[str, tuple[Capability, ...]], ...] = (
    ("Kepler", ((3, 0), (3, 2), (3, 5), (3, 7))),
    ("Maxwell", ((5, 0), (5, 2), (5, 3))),
    ("Pascal", ((6, 0), (6, 1), (6, 2))),
    ("Volta", ((7, 0), (7, 2))),
    ("Turing", ((7, 5),)),
    ("Ampere", ((8, 0), (8, 6), (8, 7))),
    ("Ada", ((8, 9),)),
    ("Hopper", ((9, 0),)),
    ("Blackwell", ((10, 0), (10, 3), (12, 0), (12, 1))),
)

ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)(a?)$")


def parse(arch: str) -> tuple[Capability, bool, bool]:
    """ "sm_86" -> ((8, 6), PTX?, arch-specific?): compute_XY is PTX; sm_90a runs on 9.0 only."""
    found = ARCH.match(arch)
    if not found:
        raise ValueError(f"not a GPU architecture like sm_86 or compute_90: {arch!r}")
    kind, major, minor, specific = found.groups()
    return (int(major), int(minor)), kind == "compute", bool(specific)


def runs_on(archs: Iterable[str], capability: Capability) -> bool:
    """Whether a build with ARCHS has code that a GPU of CAPABILITY runs."""
    for arch in archs:
        (major, minor), ptx, specific = parse(arch)
        if ptx and (major, minor) <= capability:
            return True
        if not ptx and major == capability[0] and (minor == capability[1] if specific else minor <= capability[1]):
            return True
    return False


def generation(capability: Capability) -> str:
    for name, capabilities in GENERATIONS:
        if capability in capabilities:
            return name
    return "unknown generation"


def describe(capability: Capability) -> str:
    """(9, 0) -> "9.0, Hopper"."""
    return f"{capability[0]}.{capability[1]}, {generation(capability)}"


def generations(archs: Iterable[str]) -> list[str]:
    """The generations a build runs on, by name; one it covers in part names the
    capabilities it runs ("Kepler 3.7")."""
    archs = list(archs)
    names = []
    for name, capabilities in GENERATIONS:
        running = [capability for capability in capabilities if runs_on(archs, capability)]
        if running == list(capabilities):
            names.append(name)
        elif running:
            names.append(f"{name} {', '.join(f'{major}.{minor}' for major, minor in running)}")
    return names


def fitting_variants(variants: Mapping[str, Iterable[str]], capability: Capability) -> list[str]:
    """The names in VARIANTS (name -> its GPU architectures) whose build runs on CAPABILITY."""
    return [name for name, archs in variants.items() if runs_on(archs, capability)]


def span(archs: Iterable[str]) -> str:
    """ "sm_37 … sm_86" for a list of architectures."""
    archs = list(archs)
    return archs[0] if len(archs) == 1 else f"{archs[0]} … {archs[-1]}" if archs else "no GPU code"
