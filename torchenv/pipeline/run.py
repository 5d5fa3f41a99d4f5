"""Running a built variant: `invoke verify`, `train`, `shell` in a container, and the demo."""

from __future__ import annotations

import os

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline import compose
from torchenv.pipeline.build import build_variant, image_tag


def run_in_image(variant: Variant, settings: Settings, command: list[str], interactive: bool = False) -> int:
    """Runs COMMAND in a hardened container of the variant's image, as the invoking user,
    with ./out mounted on /out; returns its exit code."""
    tag = image_tag(variant, settings)
    if not engine.get().image_id(tag):
        raise TorchenvError(f"no image {tag} yet; build it first: invoke build --variant {variant.name} --platform {variant.platform}")
    compose.prepare(settings=settings)
    options = RunOptions(
        platform=variant.platform,
        user=f"{os.getuid()}:{os.getgid()}",
        volumes={str(compose.OUT_DIR): ("/out", "rw")},
        shm_size=settings.container_shm_size(),
    )
    return engine.get().run_interactive(tag, command, options, tty=interactive)


def demo(variant: Variant, matrix: Matrix, settings: Settings) -> None:
    """Builds VARIANT, then `docker compose run` verify and train, their output shown as it comes."""
    build_variant(variant, matrix, settings)
    compose.prepare(settings=settings)
    for service in ("verify", "train"):
        if compose.compose(PROJECT_ROOT, "run", "--rm", service, capture=False, timeout=None, settings=settings).returncode != 0:
            raise TorchenvError(f"docker compose run {service} failed (output above)")
    print(f"torchenv: demo done; metrics and checkpoint are in {compose.OUT_DIR}")
