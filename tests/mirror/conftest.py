"""A mirror of the PyTorch wheel index on 127.0.0.1, holding real wheels: PyPI's torch,
torchvision and torchaudio of the cu117 set, labelled +cu117 as the PyTorch cu117 index
names that build. Downloaded once into build/wheelhouse (about 650 MB), kept between runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.locking.layering import PYTORCH_PART, split_requirements
from torchenv.locking.locks import LOCK_DIR
from torchenv.model import compat
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.settings import Settings

from . import index

MATRIX = Path(__file__).parent / "matrix.toml"
CHANNEL = "cu117"
# The lock whose wheels the mirror serves.
SOURCE_LOCK = LOCK_DIR / "cu117.txt"
WHEELHOUSE = PROJECT_ROOT / "build" / "wheelhouse" / "cu117"


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return load_matrix(MATRIX)


@pytest.fixture(scope="session")
def variant(matrix: Matrix) -> Variant:
    return matrix.get("mirrored")


@pytest.fixture(scope="session")
def mirrored_wheels() -> list[Path]:
    """The mirror's wheels: PyPI's files (their hashes as cu117's lock has them), relabelled."""
    # The lock's entries of these three, as the layering gives a PyTorch-index variant's.
    entries = split_requirements(SOURCE_LOCK.read_text(), compat.PYTORCH_INDEX_PACKAGES)[PYTORCH_PART]
    downloaded = index.download(entries, compat.PYTORCH_INDEX_PACKAGES, WHEELHOUSE)
    labelled = WHEELHOUSE / "labelled"
    labelled.mkdir(exist_ok=True)
    return [index.relabel(wheel, CHANNEL, labelled) for wheel in downloaded]


@pytest.fixture(scope="session")
def mirror(mirrored_wheels: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[index.Served]:
    root = tmp_path_factory.mktemp("mirror")
    index.write_index(root, CHANNEL, mirrored_wheels)
    with index.serve(root) as served:
        yield served


@pytest.fixture(scope="session")
def tampered_mirror(mirrored_wheels: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[index.Served]:
    """The same mirror, but its torchaudio has other bytes than the lock says."""
    root = tmp_path_factory.mktemp("tampered-mirror")
    wheels = [index.tampered(w, root / "wheels") if w.name.startswith("torchaudio-") else w for w in mirrored_wheels]
    index.write_index(root, CHANNEL, wheels)
    with index.serve(root) as served:
        yield served


@pytest.fixture(scope="session")
def mirror_settings(mirror: index.Served, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings that point TORCHENV_PYTORCH_INDEX at the mirror, with an empty lock folder
    and their own image name (what a test tags is its own)."""
    return dataclasses.replace(
        Settings.load(),
        matrix=MATRIX,
        pytorch_index=mirror.url,
        lock_dir=tmp_path_factory.mktemp("locks"),
        image_name="torchenv-mirror-test",
    )
