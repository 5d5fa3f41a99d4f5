"""Where the host has no mmdebstrap (macOS, Windows, another Linux), the base is made by
mmdebstrap in a container, with the same inputs and SOURCE_DATE_EPOCH: it must be the very
image the host makes (the same image ID), or bases would differ from machine to machine."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import bootstrap
from torchenv.pipeline.base import base_reference, ensure_base, make_base


def path_without(program: str, folder: Path) -> str:
    """A PATH with every program of this one but PROGRAM: links to them in FOLDER."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name != program and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


@pytest.fixture
def scratch_tags() -> Iterator[list[str]]:
    tags = [f"torchenv-test-base:{uuid.uuid4().hex[:8]}" for _ in range(2)]
    yield tags
    for tag in tags:
        engine.get().remove_image(tag, force=True)


@pytest.mark.host_mmdebstrap
def test_without_mmdebstrap_the_base_is_made_in_a_container_and_is_the_hosts(
    scratch_tags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings = Settings.load()
    if bootstrap.maker(settings) != "host":
        pytest.fail(
            f"this test compares with the base the host's own mmdebstrap {bootstrap.UPSTREAM_VERSION} makes: install it "
            "(./invokew does on Debian 12), or deselect the test with -m 'not host_mmdebstrap'"
        )
    # Both made now, against the same state of Debian's archive: the run's base, when this
    # made it, or a fresh one. (Either is a torchenv base to run mmdebstrap in: no registry here.)
    docker = engine.get()
    present = docker.image_id(base_reference("bookworm", settings))
    host_made = ensure_base("bookworm", settings)
    if present is not None:
        host_made = make_base("bookworm", settings, scratch_tags[0], no_cache=True)
    monkeypatch.setenv("PATH", path_without("mmdebstrap", tmp_path / "bin"))
    assert shutil.which("mmdebstrap") is None and shutil.which("docker") and shutil.which("git")
    assert bootstrap.maker(settings) == "container"
    capsys.readouterr()
    made = make_base("bookworm", settings, scratch_tags[1], no_cache=True)
    assert "making the bookworm base in a container" in capsys.readouterr().out
    assert docker.image_id(made) == docker.image_id(host_made)


def test_a_host_maker_without_mmdebstrap_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_without("mmdebstrap", tmp_path / "bin"))
    tag = f"torchenv-test-base:{uuid.uuid4().hex[:8]}"
    with pytest.raises(TorchenvError, match=r"mmdebstrap is not installed \(TORCHENV_BASE_MAKER=host\); install it"):
        make_base("bookworm", Settings(base_maker="host"), tag)
    assert engine.get().image_id(tag) is None
