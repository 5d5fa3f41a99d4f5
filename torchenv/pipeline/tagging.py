"""Image tags, computed by small functions that look inside the built image (in the manner
of docker-stacks' taggers): the image is asked for its versions, its labels for its commit;
the scheme itself is torchenv/model/names.py's."""

from __future__ import annotations

import json

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model import names
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.names import Label
from torchenv.model.platforms import host_platform

ASK_VERSIONS = (
    "import importlib.metadata as m, json, sys; print(json.dumps({'torch': m.version('torch'), 'python': '%d.%d' % sys.version_info[:2]}))"
)


def image_versions(image: str, platform: str | None = None) -> dict[str, str]:
    """torch's distribution version and Python's major.minor, as the image reports them."""
    return json.loads(engine.get().output_of(image, ["python", "-c", ASK_VERSIONS], RunOptions(platform=platform)))


def image_commit(image: str) -> str | None:
    """The commit the image was built from, by its revision label; None for a dirty tree."""
    facts = engine.get().require_image(image)
    return names.commit_of(facts.labels.get(Label.REVISION, ""))


def tags_for(image: str, variant: Variant, matrix: Matrix) -> list[str]:
    """The tags of a local build: named by the variant for the host's platform (latest for
    the default variant), by variant-arch for an emulated one (never latest)."""
    found = image_versions(image, variant.platform)
    if found["torch"] != variant.torch or found["python"] != variant.python:
        raise TorchenvError(
            f"image {image[:19]} holds torch {found['torch']} on Python {found['python']}, "
            f"the matrix says {variant.name} is torch {variant.torch} on Python {variant.python}; nothing was tagged"
        )
    native = variant.platform == host_platform()
    return names.tag_names(
        torch=found["torch"],
        name=variant.local_name,
        python=found["python"],
        commit=image_commit(image),
        latest=native and variant.name == matrix.default_variant,
    )


def published_tags(image: str, variant: Variant, matrix: Matrix) -> list[str]:
    """The tags a pushed variant gets in a registry, for one image or for the index of a
    multi-platform variant alike: named by the variant (no architecture), from the image's
    own labels."""
    labels = engine.get().require_image(image).labels
    return names.tag_names(
        torch=labels.get(Label.TORCH, variant.torch),
        name=variant.name,
        python=labels.get(Label.PYTHON, variant.python),
        commit=names.commit_of(labels.get(Label.REVISION, "")),
        latest=variant.name == matrix.default_variant,
    )
