"""What the project's git checkout says: the commit, whether it is clean, commit times."""

from __future__ import annotations

import subprocess

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
