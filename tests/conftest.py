"""Options shared by every test group."""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--variants",
        default="",
        help="comma-separated variants whose images tests/images builds and checks (default: every variant in the matrix)",
    )
