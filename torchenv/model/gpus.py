"""Which variant runs on which GPU, for the docs, the build and the tests. The rules live
once, in the in-image app's plain-Python module docker/app/torchenv_app/archs.py (the
image has no torchenv package), loaded here by its path."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from torchenv import PROJECT_ROOT

ARCHS_SOURCE = PROJECT_ROOT / "docker" / "app" / "torchenv_app" / "archs.py"


def _load_archs() -> ModuleType:
    name = "torchenv_app_archs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ARCHS_SOURCE)
    assert spec is not None and spec.loader is not None, ARCHS_SOURCE
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


archs = _load_archs()


def runs_on_column(archs_of_variant: tuple[str, ...]) -> str:
    """The matrix table's cell: the GPU generations a variant runs on, by name, and the
    GPU code compiled into it."""
    if not archs_of_variant:
        return "CPU only"
    return f"{', '.join(archs.generations(archs_of_variant))} ({' '.join(archs_of_variant)})"
