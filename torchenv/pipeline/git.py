"""What the project's git checkout says: the commit, whether it is clean, commit times."""

from __future__ import annotations

import subprocess
from pathlib import Path

from torchenv import PROJECT_ROOT


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=PROJECT_ROOT)
    return result.stdout.strip() if result.returncode == 0 else None


def head(short: bool = False) -> str | None:
    """The checked-out commit, or None outside a git checkout."""
    return _git("rev-parse", "--short=7", "HEAD") if short else _git("rev-parse", "HEAD")


def is_dirty() -> bool:
    """Whether tracked files differ from the commit."""
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def last_change_time(*paths: str) -> int | None:
    """The commit time of the last commit that touched PATHS, or None if there is none."""
    stamp = _git("log", "-1", "--format=%ct", "--", *paths)
    return int(stamp) if stamp and stamp.isdigit() else None


def is_committed(path: Path) -> bool | None:
    """Whether PATH is in the checked-out commit as it is on disk; None where git cannot
    tell (no checkout, or PATH outside it)."""
    if not path.resolve().is_relative_to(PROJECT_ROOT) or head() is None:
        return None
    relative = str(path.resolve().relative_to(PROJECT_ROOT))
    tracked = _git("ls-files", "--error-unmatch", "--", relative) is not None
    return tracked and _git("diff", "--quiet", "HEAD", "--", relative) is not None
