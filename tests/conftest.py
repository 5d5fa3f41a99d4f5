"""Options shared by every test group, and progress per variant."""

import pytest

from .progress import VariantProgress


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--variants",
        default="",
        help="comma-separated variants whose images tests/images builds and checks (default: every variant in the matrix)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(VariantProgress(), "torchenv-variant-progress")
