"""What the in-image app knows of every variant, so that `verify` and `train` can name the
variants that fit when theirs does not (a GPU without code in it, a torch that cannot
compile on its Python): the build writes it beside the app as /opt/torchenv/variants.json
(docker/app/torchenv_app/support.py reads it)."""

from __future__ import annotations

import json

from torchenv.model.matrix import Matrix

FILE_NAME = "variants.json"


def variant_facts(matrix: Matrix) -> dict[str, dict[str, object]]:
    """Each variant (as built for its first platform) with its torch, CUDA, Python, GPU code and minimum driver."""
    return {
        name: {
            "torch": variant.torch,
            "cuda": variant.cuda,
            "python": variant.python,
            "gpu_archs": list(variant.gpu_archs),
            "min_driver": variant.min_driver,
        }
        for name, variant in matrix.variants.items()
    }


def variant_facts_json(matrix: Matrix) -> str:
    return json.dumps(variant_facts(matrix), indent=2, sort_keys=True) + "\n"
