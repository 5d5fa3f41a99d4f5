"""The layer comparer behind `invoke repro` names what differs, file by file."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from torchenv import engine
from torchenv.base import ensure_base
from torchenv.repro import compare
from torchenv.settings import Settings


@pytest.fixture
def two_images() -> Iterator[tuple[str, str]]:
    base = ensure_base("bookworm", Settings.load())
    names = []
    for content in ("one", "two"):
        name = f"torchenv-test-compare:{uuid.uuid4().hex[:8]}"
        dockerfile = f"FROM {base}\nRUN echo {content} > /srv/marker && touch -d @1700000000 /srv /srv/marker\n"
        subprocess.run(["docker", "build", "--quiet", "--tag", name, "-"], input=dockerfile, text=True, check=True, capture_output=True)
        names.append(name)
    yield names[0], names[1]
    for name in names:
        engine.docker("image", "rm", "--force", name, check=False)


def test_compare_names_the_differing_file(two_images: tuple[str, str]) -> None:
    first, second = two_images
    assert compare(first, first) == []
    report = compare(first, second)
    assert report[0].startswith("layer 2: ") and report[0].endswith(": 1 paths differ")
    assert report[1].startswith("  srv/marker: file size=4 ")
    assert "mtime=1700000000" in report[1] and report[1].count("file size=4") == 2
