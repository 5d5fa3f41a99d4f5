"""Fixtures for the project tests: the worked example built on the default variant by the
same code as `invoke build --project examples/finetune`."""

from __future__ import annotations

import pytest

from torchenv import PROJECT_ROOT
from torchenv.model import platforms
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """project_variant: each variant selected (--variants; all by default) on this host's
    platform whose wheels come from PyPI. The PyTorch-index ones (cpu on amd64, cu118)
    build their project the same way, but their own images need that index, which
    tests/mirror stands in for only for a variant of its own."""
    if "compat_variant" in metafunc.fixturenames:
        variants = one_per_torch_release(selected_pypi_variants(metafunc.config))
        metafunc.parametrize("compat_variant", variants, ids=[variant.build_name for variant in variants], scope="session")
    if "project_variant" not in metafunc.fixturenames:
        return
    variants = selected_pypi_variants(metafunc.config)
    metafunc.parametrize("project_variant", variants, ids=[variant.build_name for variant in variants], scope="session")


def one_per_torch_release(variants: list[Variant]) -> list[Variant]:
    """The third-party projects (test_compat.py) run on the first variant selected of each
    torch release: cu117 and cu121 in a full run, as the launcher tests do; the workflow's
    job of cu117-py39 selects that one alone, so it runs them there."""
    first: dict[str, Variant] = {}
    for variant in variants:
        first.setdefault(variant.torch_release, variant)
    return list(first.values())


def selected_pypi_variants(config: pytest.Config) -> list[Variant]:
    """Each variant selected (--variants; all by default) on this host's platform whose
    wheels come from PyPI."""
    matrix = load_matrix(Settings.load().matrix)
    chosen = {name.strip() for name in config.getoption("--variants").split(",") if name.strip()}
    return [
        variant
        for variant in matrix.every_build()
        if variant.platform == platforms.host_platform() and variant.pytorch_channel is None and (not chosen or variant.name in chosen)
    ]
