"""`invoke clean`: torchenv's images and build cache, and nothing else of Docker's."""

from __future__ import annotations

from torchenv import engine
from torchenv.model import names
from torchenv.model.names import Label
from torchenv.model.settings import Settings


def clean(settings: Settings) -> tuple[int, int]:
    """Removes every torchenv image (variants, bases, tagged in the image repository) and
    torchenv's build cache records; returns how many of each."""
    docker = engine.get()
    images = docker.image_ids({"label": Label.VARIANT}) | docker.image_ids({"label": Label.BASE})
    images |= docker.image_ids({"reference": settings.image_name})
    for image in sorted(images):
        docker.remove_image(image, force=True)
    records = docker.build_cache_ids(names.BUILD_CACHE_MARK)
    for record in records:
        docker.prune_build_cache(record)
    return len(images), len(records)
