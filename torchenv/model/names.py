"""Every name torchenv gives things, defined once: image labels, the tag scheme, the
BuildKit stage names and the base image repository. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchenv.model.matrix import Variant


class Label:
    """The image labels torchenv writes and reads."""

    PREFIX = "io.torchenv."
    VARIANT = PREFIX + "variant"
    TORCH = PREFIX + "torch"
    TORCHVISION = PREFIX + "torchvision"
    TORCHAUDIO = PREFIX + "torchaudio"
    CUDA = PREFIX + "cuda"
    PYTHON = PREFIX + "python"
    MIN_DRIVER = PREFIX + "min-driver"
    # The GPU code compiled into its torch, space-separated ("sm_37 sm_50 ..."), or "none".
    GPU_ARCHS = PREFIX + "gpu-archs"
    LOCK_SHA256 = PREFIX + "lock-sha256"
    # Where in the image its CycloneDX SBOM is.
    SBOM = PREFIX + "sbom"
    # On a project's image: the project's name and its own lock's sha256.
    PROJECT = PREFIX + "project"
    PROJECT_LOCK_SHA256 = PREFIX + "project-lock-sha256"
    # On base images: the Debian suite they were made from.
    BASE = PREFIX + "base"
    # On containers the tests start, so that a leftover one can be found.
    TEST = PREFIX + "test"
    TITLE = "org.opencontainers.image.title"
    SOURCE = "org.opencontainers.image.source"
    REVISION = "org.opencontainers.image.revision"


# What a lock-less build records as its lock's hash.
UNLOCKED = "none: not reproducible"

# docker/Dockerfile's stages, in order (a unit test keeps them equal).
BASE_STAGE = "torchenv-base"
INSTALLER_STAGE = "torchenv-installer"
TORCH_STAGE = "torchenv-torch"
RUNTIME_STAGE = "torchenv-runtime"
# A user's project on top of a variant: its packages, then its code.
PROJECT_STAGE = "torchenv-project"
# The named build contexts the project stages read: its lock, its code.
PROJECT_CONTEXTS = ("project-requirements", "project")
STAGES = (BASE_STAGE, INSTALLER_STAGE, TORCH_STAGE, RUNTIME_STAGE, PROJECT_STAGE)
# What the descriptions of torchenv's build cache records mention (a stage, the uv cache
# mount's id, /opt/torchenv), and no one else's.
BUILD_CACHE_MARK = "torchenv"
# docker/slurm/Dockerfile's one stage, and its image's repository suffix (torchenv-slurm).
SLURM_STAGE = "torchenv-slurm"
SLURM_SUFFIX = "slurm"
# docker/base/Dockerfile's one stage.
ROOTFS_STAGE = "torchenv-rootfs"

BASE_REPOSITORY = "torchenv-base"


def identity_labels(variant: Variant, lock_sha256: str | None) -> dict[str, str]:
    """The labels that say which matrix entry and which lock an image is: written by the
    build, compared by `invoke pull` (which leaves the lock out when there is none)."""
    labels = {
        Label.VARIANT: variant.name,
        Label.TORCH: variant.torch,
        Label.TORCHVISION: variant.torchvision,
        Label.TORCHAUDIO: variant.torchaudio,
        Label.CUDA: variant.cuda,
        Label.PYTHON: variant.python,
        Label.GPU_ARCHS: gpu_archs_label(variant.gpu_archs),
    }
    if lock_sha256 is not None:
        labels[Label.LOCK_SHA256] = lock_sha256
    return labels


def gpu_archs_label(archs: tuple[str, ...]) -> str:
    return " ".join(archs) or "none"


def label_mismatches(found: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    return [f"{key} is {found.get(key, 'missing')!r}, expected {value!r}" for key, value in expected.items() if found.get(key) != value]


def commit_of(revision: str) -> str | None:
    """The short commit of a clean build's revision label; None for a dirty or unknown tree
    (an immutable tag must name exactly what was built)."""
    if not revision or revision == "unknown" or revision.endswith("-dirty"):
        return None
    return revision[:7]


def tag_names(*, torch: str, name: str, python: str, commit: str | None, latest: bool) -> list[str]:
    """The tags of one image (without repository), most specific first:
    <torch>-<name>-py<python>-<commit> (only from a clean, committed tree), <torch>-<name>,
    <name>, and latest for the default variant. NAME is the variant's name, or for an image
    of another platform than the host's, name-arch (cpu-arm64). torch's local version label
    is dropped ("2.0.1+cu118" -> "2.0.1"): the variant already names the build, and "+" is
    no tag character."""
    release = torch.split("+", 1)[0]
    full = [f"{release}-{name}-py{python}-{commit}"] if commit else []
    return [*full, f"{release}-{name}", name, *(["latest"] if latest else [])]


def project_tag_names(variant_name: str, project_lock_sha256: str, latest: bool) -> list[str]:
    """The tags of a project's image (in the project's repository, torchenv-<project>), most
    specific first: <variant>-lock-<first 12 of its lock's sha256>, <variant>, and latest
    for the default variant."""
    return [f"{variant_name}-lock-{project_lock_sha256[:12]}", variant_name, *(["latest"] if latest else [])]


def platform_tag(name: str, arch: str) -> str:
    """Where a multi-platform variant's one platform is pushed, before the index lists it."""
    return f"{name}-{arch}"
