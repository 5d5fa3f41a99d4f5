"""`invoke list`: the matrix as a table, as users and the README see it."""

from __future__ import annotations

from torchenv.model import gpus
from torchenv.model.matrix import Matrix

COLUMNS = (
    "variant", "platform", "torch", "torchvision", "torchaudio", "python", "cuda",
    "GPUs (compiled code)", "wheels from", "min. driver", "base",
)  # fmt: skip


def rows(matrix: Matrix) -> list[tuple[str, ...]]:
    return [
        (
            v.name + (" (default)" if v.name == matrix.default_variant else ""),
            v.platform,
            v.torch,
            v.torchvision,
            v.torchaudio,
            v.python,
            v.cuda,
            gpus.runs_on_column(v.gpu_archs),
            "PyPI" if v.pytorch_channel is None else f"PyTorch index ({v.pytorch_channel})",
            v.min_driver or "-",
            v.base,
        )
        for v in matrix.every_build()
    ]


def text_table(matrix: Matrix) -> str:
    table = [COLUMNS, *rows(matrix)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(matrix: Matrix) -> str:
    table = [COLUMNS, tuple("---" for _ in COLUMNS), *rows(matrix)]
    return "\n".join("| " + " | ".join(row) + " |" for row in table)


def ci_include(matrix: Matrix) -> list[dict[str, str | bool]]:
    """One CI job per variant (all its platforms), with what a job needs to name and set it up."""
    return [
        {
            "variant": name,
            "torch": v.torch,
            "cuda": v.cuda,
            "python": v.python,
            "wheel_source": v.wheel_source,
            "platforms": ",".join(v.platforms),
            # The default variant's job also runs the tiers that are not per variant.
            "default": name == matrix.default_variant,
        }
        for name, v in matrix.variants.items()
    ]
