"""The wheel-source preflight against the real PyPI (the unit tier never leaves this machine)."""

from __future__ import annotations

from torchenv.locking.wheels import require_reachable
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings


def test_pypi_variants_need_no_index() -> None:
    require_reachable(load_matrix().get("cu117"), Settings(pytorch_index=""))
