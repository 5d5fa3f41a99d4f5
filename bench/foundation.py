"""Foundation figures, measured here: per variant the image size, a no-op rebuild, a
rebuild after editing the demo code, and the wall time of `docker compose run verify`.

Run from the project root:  .venv/bin/python -m bench.foundation [--variants cu117,cu121]
(Cold build times come from a build with an empty engine; see bench/README.md.)
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import time

from torchenv import PROJECT_ROOT, compose, engine
from torchenv.build import build_variant
from torchenv.matrix import load_matrix
from torchenv.settings import Settings

APP_FILE = PROJECT_ROOT / "docker" / "app" / "torchenv_app" / "__init__.py"


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def quiet_build(variant, matrix, settings) -> None:
    with open(os.devnull, "w") as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            build_variant(variant, matrix, settings)
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def compose_verify(variant_name: str) -> None:
    env = {**os.environ, **compose.user_environment(), "TORCHENV_VARIANT": variant_name}
    subprocess.run(["docker", "compose", "run", "--rm", "verify"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="cu117,cu121")
    args = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    compose.prepare()
    print("| variant | image size (GB) | no-op rebuild (s) | rebuild after demo edit (s) | compose run verify (s) |")
    print("| --- | --- | --- | --- | --- |")
    original = APP_FILE.read_text()
    for name in args.variants.split(","):
        variant = matrix.get(name)
        build = functools.partial(quiet_build, variant, matrix, settings)
        build()
        size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", f"{settings.image_name}:{name}").stdout) / 1e9
        no_op = timed(build)
        try:
            APP_FILE.write_text(original + f"# bench edit {time.time()}\n")
            edited = timed(build)
        finally:
            APP_FILE.write_text(original)
        build()
        verify = min(timed(functools.partial(compose_verify, name)) for _ in range(3))
        print(f"| {name} | {size:.2f} | {no_op:.1f} | {edited:.1f} | {verify:.1f} |")


if __name__ == "__main__":
    main()
