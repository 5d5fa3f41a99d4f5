"""Limits of the torch release inside the image that checks must know about, and what the
image knows of the other variants (to name the ones that fit where this one does not)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Written by the build beside the app (from the matrix); TORCHENV_VARIANTS_FILE names
# another where the app runs outside an image.
VARIANTS_FILE = Path(__file__).resolve().parent.parent / "variants.json"


def variants() -> dict[str, dict[str, Any]]:
    """Every variant's torch, cuda, python, gpu_archs and min_driver, by name ({} without the file)."""
    path = Path(os.environ.get("TORCHENV_VARIANTS_FILE") or VARIANTS_FILE)
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# Below this per process, /dev/shm is Docker's 64 MB default or near it: DataLoader workers die on it.
SHM_PER_PROCESS = 2**30


def shm_bytes() -> int | None:
    """The size of /dev/shm, through which DataLoader workers hand over their batches (None without one)."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_frsize * stats.f_blocks


def shown_bytes(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"


def release(version: str) -> tuple[int, ...]:
    """ "2.0.1+cu117" -> (2, 0); "3.9" -> (3, 9)."""
    return tuple(int(part) for part in version.split("+")[0].split(".")[:2])


def compiles(torch_version: str, python: str) -> bool:
    """torch 2.0.x's dynamo refuses Python 3.11 outright; torch 2.1 added 3.11 support."""
    return release(torch_version) >= (2, 1) or release(python) < (3, 11)


def compile_unsupported() -> str | None:
    """Why torch.compile cannot work with this torch and Python, or None when it can; the
    reason names the variants that compile, this torch's first."""
    import torch

    python = "{}.{}".format(*sys.version_info[:2])
    if compiles(torch.__version__, python):
        return None
    mine = torch.__version__.split("+")[0]
    known = variants()  # read once
    fitting = sorted(
        (name for name, facts in known.items() if compiles(facts["torch"], facts["python"])),
        key=lambda name: (known[name]["torch"].split("+")[0] != mine, name),
    )
    described = " or ".join(f"{name} (torch {known[name]['torch']}, Python {known[name]['python']})" for name in fitting)
    advice = f"use the {described} variant" + ("s" if len(fitting) > 1 else "") if fitting else "torch 2.1 or a Python 3.10 base does"
    return f"torch {torch.__version__} does not support torch.compile on Python {python}: {advice}"
