"""Which of a variant's pinned packages go into which venv layer of the image."""

from __future__ import annotations

import re

# The NVIDIA libraries (cuDNN, cuBLAS, NCCL, ...) are most of a CUDA venv and move with the
# CUDA version, not with torch: their own layer is pulled in parallel with torch's and
# kept when only torch changes.
LAYERS = ("nvidia", "rest")
# A part of the second layer installed from the variant's PyTorch index; the rest of its
# packages come from PyPI.
PYTORCH_PART = "pytorch-index"
NVIDIA_PREFIX = "nvidia-"
# `python3 -m venv` seeds these; the lock's versions replace them in the venv's own (first)
# layer, since replacing them in a later one would leave whiteouts, files whose mtime
# cannot be clamped and so would make the layer differ from build to build.
SEEDED = frozenset({"pip", "setuptools", "wheel"})

_REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_entries(text: str) -> list[tuple[str, list[str]]]:
    """A requirements file's requirements, each as its normalised name and its lines (its
    continuation lines and comments go with it; the header before the first does not)."""
    entries: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        match = _REQUIREMENT.match(line)
        if match:
            entries.append((normalised(match["name"]), [line]))
        elif entries:
            entries[-1][1].append(line)
    return entries


def normalised(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirements(text: str, from_pytorch_index: frozenset[str] = frozenset()) -> dict[str, str]:
    """A requirements file (a lock with its hashes, or plain pins) split into one file
    per layer, and FROM_PYTORCH_INDEX's packages into the PYTORCH_PART, so that a layer's
    input (and its build cache) changes only with its own packages."""
    entries = requirement_entries(text)
    parts: dict[str, list[str]] = {part: [] for part in (*LAYERS, PYTORCH_PART)}
    for name, lines in entries:
        if name in from_pytorch_index:
            parts[PYTORCH_PART].extend(lines)
        elif name.startswith(NVIDIA_PREFIX) or name in SEEDED:
            parts["nvidia"].extend(lines)
        else:
            parts["rest"].extend(lines)
    return {layer: "".join(lines) for layer, lines in parts.items()}
