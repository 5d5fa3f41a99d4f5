"""These tests build variants from scratch and unlocked, duplicating gigabytes of build
cache; once they are done, the unreferenced part of it goes, so a full run fits on a
machine's disk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from torchenv import engine


@pytest.fixture(scope="package", autouse=True)
def release_duplicated_build_cache() -> Iterator[None]:
    yield
    engine.get().prune_build_cache()
