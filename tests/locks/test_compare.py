"""The layer comparer behind `invoke repro` names what differs, file by file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import BuildRequest
from torchenv.model import platforms
from torchenv.model.settings import Settings
from torchenv.pipeline.base import ensure_base
from torchenv.pipeline.repro import compare


@pytest.fixture
def two_images(tmp_path: Path) -> Iterator[tuple[str, str]]:
    base = ensure_base("bookworm", Settings.load())
    names = []
    for content in ("one", "two"):
        name = f"torchenv-test-compare:{uuid.uuid4().hex[:8]}"
        (tmp_path / "Dockerfile").write_text(f"FROM {base}\nRUN echo {content} > /srv/marker && touch -d @1700000000 /srv /srv/marker\n")
        built = engine.get().build(BuildRequest(context=tmp_path, platform=platforms.AMD64, tags=(name,)), echo=False)
        assert built.image_id, "\n".join(built.tail[-20:])
        names.append(name)
    yield names[0], names[1]
    for name in names:
        engine.get().remove_image(name, force=True)


def test_compare_names_the_differing_file(two_images: tuple[str, str]) -> None:
    first, second = two_images
    assert compare(first, first) == []
    report = compare(first, second)
    assert report[0].startswith("layer 2: ") and report[0].endswith(": 1 paths differ")
    assert report[1].startswith("  srv/marker: file size=4 ")
    assert "mtime=1700000000" in report[1] and report[1].count("file size=4") == 2
