"""The only reasons a test may skip. Each helper prefixes its reason with a tag that
tests/conftest.py recognises; any other skip fails the run, and a skip is never a pass."""

from __future__ import annotations

import pytest

NO_GPU = "expected: no GPU"
NOT_CONFIGURED = "expected: wheel source not configured and no image"
NO_EMULATION = "expected: no emulation"
ALLOWED = (NO_GPU, NOT_CONFIGURED, NO_EMULATION)


def no_gpu(reason: str) -> None:
    pytest.skip(f"{NO_GPU}: {reason}")


def not_configured(reason: str) -> None:
    pytest.skip(f"{NOT_CONFIGURED}: {reason}")


def no_emulation(reason: str) -> None:
    pytest.skip(f"{NO_EMULATION}: {reason}")


def is_allowed(reason: str) -> bool:
    return reason.removeprefix("Skipped: ").startswith(ALLOWED)
