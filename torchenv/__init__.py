"""torchenv: reproducible, verified PyTorch container images."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def display_path(path: Path) -> str:
    """A path as users know it: relative to the project when it lies inside."""
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)
