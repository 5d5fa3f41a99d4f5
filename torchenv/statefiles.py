"""Writing the files torchenv keeps its state in (locks, digests, build and test records,
.env): never half-written, and never two read-modify-writes at once.

A crash, Ctrl-C or a full disk while writing leaves the file as it was: the new text goes
to a temporary file beside it, which then replaces it in one rename. Two commands updating
the same record (two `invoke push` runs on one digests file) take turns under an advisory
lock on a sidecar file, so neither loses the other's entry."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from torchenv.errors import TorchenvError


def write_text(path: Path, text: str) -> None:
    """PATH holds TEXT, or (on any failure) what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(partial, path.stat().st_mode & 0o7777)
        else:
            os.chmod(partial, 0o666 & ~current_umask())
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise TorchenvError(
            f"cannot write {path} ({error.strerror or error}); it is as it was: free some space or fix its folder's permissions"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Holds PATH's sidecar lock (PATH.lock) for one read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
