"""The container engine: the one way torchenv reaches Docker.

`engine.get()` is the engine every pipeline step uses; `engine.use(fake)` swaps in another
object with the same methods (a unit test's fake) for the duration of a `with` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torchenv.engine.docker_engine import DockerEngine, last_line
from torchenv.engine.requests import BuildRequest, BuildResult, CacheRecord, ImageFacts, RunOptions, RunResult

__all__ = [
    "BuildRequest",
    "BuildResult",
    "CacheRecord",
    "DockerEngine",
    "ImageFacts",
    "RunOptions",
    "RunResult",
    "get",
    "last_line",
    "use",
]

_active: Any = None


def get() -> DockerEngine:
    global _active
    if _active is None:
        _active = DockerEngine()
    return _active


@contextmanager
def use(replacement: Any) -> Iterator[Any]:
    """Every call of engine.get() inside the block returns REPLACEMENT."""
    global _active
    previous, _active = _active, replacement
    try:
        yield replacement
    finally:
        _active = previous
