"""The only reasons a test may skip. Each helper prefixes its reason with a tag that
tests/conftest.py recognises; any other skip fails the run, and a skip is never a pass."""

from __future__ import annotations

import pytest

NO_GPU = "expected: no GPU"
# The PyTorch index itself (no mirror set) does not answer from this machine, and no image
# of the variant is here to test instead.
UNREACHABLE = "expected: the PyTorch index is unreachable from here, no mirror is set and no image"
NO_EMULATION = "expected: no emulation"
ALLOWED = (NO_GPU, UNREACHABLE, NO_EMULATION)


def no_gpu(reason: str) -> None:
    pytest.skip(f"{NO_GPU}: {reason}")


def unreachable(reason: str) -> None:
    pytest.skip(f"{UNREACHABLE}: {reason}")


def no_emulation(reason: str) -> None:
    pytest.skip(f"{NO_EMULATION}: {reason}")


def is_allowed(reason: str) -> bool:
    return reason.removeprefix("Skipped: ").startswith(ALLOWED)
