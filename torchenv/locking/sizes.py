"""How much disk a variant's build needs, estimated from the sizes of its locked wheels."""

from __future__ import annotations

import re
from collections.abc import Callable

from torchenv.locking.wheels import file_sizes
from torchenv.model import platforms
from torchenv.model.settings import Settings

# The wheel file names' architecture tag per platform.
# Installed, a wheel takes about 2.2 times its size; a build holds the installed venv
# twice (its stage and the image's layer) and the wheels once (the cache mount).
INSTALLED_PER_WHEEL_BYTE = 2.2
BUILD_OVERHEAD_GB = 1.0
# Without sizes in the lock (an index that does not give them): what a variant took here.
FALLBACK_GB = {"cuda": 15.0, "cpu": 4.0}

PACKAGE = re.compile(r"^([A-Za-z0-9_.\-]+)==\S+(?P<hashes>(?:\s*\\\s*--hash=sha256:[0-9a-f]{64})+)", re.M)


def locked_hashes(lock_text: str) -> dict[str, list[str]]:
    """name -> the sha256 hashes the lock allows for it."""
    return {match[1].lower(): re.findall(r"sha256:([0-9a-f]{64})", match["hashes"]) for match in PACKAGE.finditer(lock_text)}


def wheel_bytes(lock_text: str, index_of: Callable[[str], str], platform: str, settings: Settings) -> int | None:
    """The download size of the wheels a build of this lock installs, from the file sizes
    of the index each package comes from (INDEX_OF its name); None when one does not give them."""
    arch = platforms.MACHINES[platform]
    total = 0
    for name, hashes in locked_hashes(lock_text).items():
        sizes = file_sizes(index_of(name), name, settings)
        candidates = [sizes[digest] for digest in hashes if digest in sizes]
        if not candidates:
            return None
        # The lock allows every file of a version; the build takes the one for its platform.
        fitting = [size for file, size in candidates if arch in file or file.endswith("-any.whl")]
        total += max(fitting or [size for _, size in candidates])
    return total


def build_needs_gb(wheel_download_bytes: int | None, is_cuda: bool, layers_present: bool = False) -> float:
    """LAYERS_PRESENT: the engine holds an image of the same lock, whose venv layers a
    rebuild takes from the build cache or, where that was pruned, writes again as the
    same layers; then only the stage's venv and the downloads need room."""
    if wheel_download_bytes is None:
        return FALLBACK_GB["cuda" if is_cuda else "cpu"]
    download_gb = wheel_download_bytes / 1e9
    venv_copies = 1 if layers_present else 2
    return download_gb * (1 + venv_copies * INSTALLED_PER_WHEEL_BYTE) + BUILD_OVERHEAD_GB
