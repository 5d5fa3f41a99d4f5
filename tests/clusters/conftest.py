"""Fixtures for the cluster rehearsals: the matrix's default variant (the smallest image
built here, the one the projects' tests build on), built by the same code as `invoke build`."""

from __future__ import annotations

import pytest

from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant

from ..projects.conftest import matrix, settings, variant

__all__ = ["image", "matrix", "settings", "variant"]


@pytest.fixture(scope="session")
def image(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_variant(variant, matrix, settings)
