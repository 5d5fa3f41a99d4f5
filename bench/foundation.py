"""Foundation figures, measured here: per variant the image size, a no-op rebuild, a
rebuild after editing the demo code, and the wall time of `docker compose run verify`.

Run from the project root:  .venv/bin/python -m bench.foundation [--variants cu117,cu121]
(Cold build times: `./invokew bench --cold`; see bench/README.md.) The measurements are
bench/performance.py's own.
"""

from __future__ import annotations

import argparse

from bench.performance import compose_verify, image_size, rebuilds
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline import compose
from torchenv.pipeline.build import image_tag


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="cu117,cu121")
    args = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    compose.prepare()
    print("| variant | image size (GB) | no-op rebuild (s) | rebuild after demo edit (s) | compose run verify (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.variants.split(","):
        variant = matrix.get(name)
        times = rebuilds(variant, matrix, settings)
        size = image_size(image_tag(variant, settings)) / 1e9
        verify = compose_verify(variant)
        print(f"| {name} | {size:.2f} | {times['no_op_rebuild']:.1f} | {times['demo_edit_rebuild']:.1f} | {verify:.1f} |")


if __name__ == "__main__":
    main()
