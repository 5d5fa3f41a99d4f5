"""Fixtures for the project tests: the worked example built on the default variant by the
same code as `invoke build --project examples/finetune`."""

from __future__ import annotations

import pytest

from torchenv import PROJECT_ROOT
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.project import Project, load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.project_build import build_project

EXAMPLE = PROJECT_ROOT / "examples" / "finetune"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def matrix(settings: Settings) -> Matrix:
    return load_matrix(settings.matrix)


@pytest.fixture(scope="session")
def variant(matrix: Matrix) -> Variant:
    """The matrix's default variant: the one the README's project path builds on."""
    return matrix.get(matrix.default_variant)


@pytest.fixture(scope="session")
def example() -> Project:
    return load_project(EXAMPLE)


@pytest.fixture(scope="session")
def example_image(example: Project, variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_project(example, variant, matrix, settings)
