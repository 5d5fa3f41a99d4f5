"""Fixtures for the cluster rehearsals: the matrix's default variant (the smallest image
built here, the one the projects' tests build on), built by the same code as `invoke build`."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant

from ..helpers import compose_command, compose_run
from ..projects.conftest import matrix, settings, variant

__all__ = ["image", "matrix", "settings", "variant"]


@pytest.fixture(scope="session")
def image(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_variant(variant, matrix, settings)


@pytest.fixture(scope="session")
def reference(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose demo's two nodes, the same seed and epochs as every cluster rehearsal
    here: node 0's checkpoint, the model each of them must end with."""
    folder = tmp_path_factory.mktemp("compose-ddp")
    try:
        run = compose_run(folder, "train-ddp", TORCHENV_IMAGE=image)
    finally:
        compose_command(folder, "--profile", "ddp", "down", "--volumes", TORCHENV_IMAGE=image)
    assert run.returncode == 0, run.stdout + run.stderr
    return folder / "out" / "checkpoint.pt"
