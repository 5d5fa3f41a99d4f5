"""Image tags, computed from the matrix and from what the built image says of itself
(in the manner of docker-stacks' taggers): the image is asked for its versions."""

from __future__ import annotations

import json

from torchenv import engine, git
from torchenv.errors import TorchenvError
from torchenv.matrix import Matrix, Variant

ASK_VERSIONS = (
    "import importlib.metadata as m, json, sys; print(json.dumps({'torch': m.version('torch'), 'python': '%d.%d' % sys.version_info[:2]}))"
)


def image_versions(image: str, platform: str | None = None) -> dict[str, str]:
    """torch's distribution version and Python's major.minor, as the image reports them."""
    result = engine.docker(*engine.run_args(image, ["python", "-c", ASK_VERSIONS], platform=platform))
    return json.loads(result.stdout)


def short_commit() -> str | None:
    """The commit the build came from, or None when the tree has uncommitted changes
    (an immutable tag must name exactly what was built)."""
    return None if git.is_dirty() else git.head(short=True)


def tags_for(image: str, variant: Variant, matrix: Matrix) -> list[str]:
    """Tag names (without repository), most specific first:
    <torch>-<variant>-py<python>-<commit>, <torch>-<variant>, <variant>, and latest for the default variant.
    An image for another platform than the host's carries it in every tag (cpu-arm64) and is never latest."""
    found = image_versions(image, variant.platform)
    if found["torch"] != variant.torch or found["python"] != variant.python:
        raise TorchenvError(
            f"image {image[:19]} holds torch {found['torch']} on Python {found['python']}, "
            f"the matrix says {variant.name} is torch {variant.torch} on Python {variant.python}; nothing was tagged"
        )
    torch = found["torch"].replace("+", "-")  # "+" is not allowed in a tag: 2.0.1+cu118 -> 2.0.1-cu118
    name = variant.local_name
    moving = [f"{torch}-{name}", name]
    commit = short_commit()
    full = [f"{torch}-{name}-py{found['python']}-{commit}"] if commit else []
    latest = ["latest"] if name == matrix.default_variant else []
    return full + [tag for tag in moving if tag not in full] + latest
