"""Fixtures for the cluster rehearsals: the matrix's default variant (the smallest image
built here), built by the same code as `invoke build`."""

from __future__ import annotations

import pytest

from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def matrix(settings: Settings) -> Matrix:
    return load_matrix(settings.matrix)


@pytest.fixture(scope="session")
def variant(matrix: Matrix) -> Variant:
    return matrix.get(matrix.default_variant)


@pytest.fixture(scope="session")
def image(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_variant(variant, matrix, settings)
