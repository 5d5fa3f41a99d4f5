"""torchenv: reproducible, verified PyTorch container images."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
