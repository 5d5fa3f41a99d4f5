"""`invoke build`: base -> BuildKit build -> verify in a container -> only then the tag."""

from __future__ import annotations

import fcntl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torchenv import PROJECT_ROOT, engine, wheels
from torchenv.base import ensure_base
from torchenv.errors import TorchenvError
from torchenv.matrix import Matrix, Variant
from torchenv.settings import Settings

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"


def image_tag(variant: Variant, settings: Settings) -> str:
    return f"{settings.image_name}:{variant.name}"


def default_tag(settings: Settings) -> str:
    """The tag compose runs when no variant is named: the matrix's default variant."""
    return f"{settings.image_name}:latest"


def git_revision() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def build_args(variant: Variant, settings: Settings, base_image: str) -> dict[str, str]:
    """Every ARG of docker/Dockerfile, resolved from the matrix entry."""
    return {
        "BASE_IMAGE": base_image,
        "VARIANT": variant.name,
        "PYTHON_VERSION": variant.python,
        "TORCH_VERSION": variant.torch,
        "TORCHVISION_VERSION": variant.torchvision,
        "TORCHAUDIO_VERSION": variant.torchaudio,
        "CUDA_VERSION": variant.cuda,
        "MIN_DRIVER": variant.min_driver or "",
        "REQUIREMENTS": " ".join(variant.requirements),
        "TORCH_INDEX_URL": wheels.index_url(variant, settings) or "",
        "SOURCE_URL": settings.source_url,
        "REVISION": git_revision(),
    }


def buildx_command(variant: Variant, settings: Settings, base_image: str, iidfile: Path) -> list[str]:
    command = ["docker", "buildx", "build", "--file", str(DOCKERFILE), "--iidfile", str(iidfile), "--progress", settings.progress]
    ca_bundle = settings.ca_bundle_path()
    if ca_bundle:
        # A secret mount: pip sees it during the RUN, no layer or history keeps it.
        command += ["--secret", f"id=ca-bundle,src={ca_bundle}"]
    for name, value in build_args(variant, settings, base_image).items():
        command += ["--build-arg", f"{name}={value}"]
    return [*command, str(PROJECT_ROOT)]


def base_image_for(variant: Variant, settings: Settings) -> str:
    if variant.debian_suite:
        return ensure_base(variant.debian_suite, settings)
    return variant.base


@contextmanager
def exclusive_build(variant: Variant, settings: Settings) -> Iterator[None]:
    """One build per variant at a time: a second one refuses instead of racing the first."""
    locks = settings.work_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{variant.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TorchenvError(f"another build of {variant.name} is running on this machine; wait for it to finish, then retry") from None
        yield


def build_variant(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    """Builds, verifies and tags one variant; returns its tag. Nothing is tagged unless
    the image passed `verify` in a container."""
    engine.require_engine()
    wheels.require_reachable(variant, settings)
    with exclusive_build(variant, settings):
        base_image = base_image_for(variant, settings)
        with tempfile.TemporaryDirectory(prefix="build-", dir=settings.work_dir) as scratch:
            iidfile = Path(scratch) / "iid"
            print(f"torchenv: building {variant.name} (torch {variant.torch}, CUDA {variant.cuda}, Python {variant.python})", flush=True)
            if subprocess.run(buildx_command(variant, settings, base_image, iidfile)).returncode != 0:
                raise TorchenvError(f"the build of {variant.name} failed (see BuildKit's output above); nothing was tagged")
            image = iidfile.read_text().strip()
        tag = image_tag(variant, settings)
        if engine.image_id(tag) == image:
            # Tags are applied only after verify passed, so this exact image already did.
            print(f"torchenv: {tag} is unchanged ({image[:19]}) and was verified when tagged", flush=True)
            return tag
        print(f"torchenv: verifying {variant.name} ({image[:19]}) in a container before tagging it", flush=True)
        check = subprocess.run(["docker", *engine.run_args(image, ["verify"])])
        if check.returncode != 0:
            raise TorchenvError(f"{variant.name} built as {image[:19]} but failed verify (report above); nothing was tagged")
        engine.tag(image, tag)
        if variant.name == matrix.default_variant:
            engine.tag(image, default_tag(settings))
        print(f"torchenv: {tag} is ready", flush=True)
        return tag
