"""`invoke build`: base -> BuildKit build -> verify in a container -> only then the tag."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torchenv import PROJECT_ROOT, display_path, engine
from torchenv.engine import BuildRequest, RunOptions
from torchenv.errors import TorchenvError
from torchenv.locking import sbom, wheels
from torchenv.locking.layering import LAYERS, PYTORCH_PART, split_requirements
from torchenv.locking.locks import Lock, base_drift, base_list_path, read_lock, write_lock
from torchenv.locking.sizes import build_needs_gb
from torchenv.model import compat, names, platforms, variant_facts
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.names import Label
from torchenv.model.platforms import host_platform
from torchenv.model.settings import Settings
from torchenv.pipeline import build_records, git
from torchenv.pipeline.base import FALLBACK_EPOCH, debian_packages, ensure_base, package_list, source_date_epoch
from torchenv.pipeline.buildlog import failure_reason
from torchenv.pipeline.tagging import tags_for

DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"


def image_tag(variant: Variant, settings: Settings) -> str:
    return f"{settings.image_name}:{variant.local_name}"


def git_revision() -> str:
    revision = git.head() or "unknown"
    return revision + ("-dirty" if git.is_dirty() else "")


def build_args(variant: Variant, settings: Settings, base_image: str, lock: Lock | None = None) -> dict[str, str]:
    """Every ARG of docker/Dockerfile, resolved from the matrix entry and its lock."""
    return {
        "BASE_IMAGE": base_image,
        "BASE_EPOCH": str(source_date_epoch()),
        "VARIANT": variant.name,
        "PYTHON_VERSION": variant.python,
        "TORCH_VERSION": variant.torch,
        "TORCHVISION_VERSION": variant.torchvision,
        "TORCHAUDIO_VERSION": variant.torchaudio,
        "CUDA_VERSION": variant.cuda,
        "GPU_ARCHS": names.gpu_archs_label(variant.gpu_archs),
        "MIN_DRIVER": variant.min_driver or "",
        "LOCKED": "1" if lock else "0",
        # Image and file timestamps come from the lock, never the clock.
        "SOURCE_DATE_EPOCH": str(lock.source_date_epoch if lock else FALLBACK_EPOCH),
        # Without a private mirror's credentials: build arguments are in the image's history.
        "TORCH_INDEX_URL": wheels.without_credentials(wheels.index_url(variant, settings) or ""),
    }


def image_labels(variant: Variant, settings: Settings, lock: Lock | None) -> dict[str, str]:
    """The labels a variant's image carries. They are given to the build, not written in the
    Dockerfile, so that their names live in one place (torchenv/model/names.py); BuildKit
    puts them in the image's config, so the revision busts no layer."""
    identity = names.identity_labels(variant, lock.sha256 if lock else names.UNLOCKED)
    return {
        Label.TITLE: f"torchenv {variant.name}",
        Label.SOURCE: settings.source_url,
        Label.REVISION: git_revision(),
        **identity,
        Label.MIN_DRIVER: variant.min_driver or "",
        # A locked build carries its SBOM (docker/Dockerfile's app step copies it there).
        **({Label.SBOM: sbom.IMAGE_PATH} if lock else {}),
    }


def build_request(
    variant: Variant, settings: Settings, base_image: str, lock: Lock | None = None, no_cache: bool = False, *, base_packages: str
) -> BuildRequest:
    """The one description of a variant's build, for `invoke build`, `invoke repro` and the bench.
    BASE_PACKAGES are the base's Debian packages (debian_packages()), for the SBOM. NO_CACHE
    runs every step again; BuildKit then also gives the steps empty cache mounts."""
    ca_bundle = settings.ca_bundle_path()
    index = wheels.index_url(variant, settings)
    # Secret mounts: the installers see them during the RUN, no layer or history keeps them.
    secrets = {"ca-bundle": ca_bundle} if ca_bundle else {}
    if index and (entry := wheels.netrc_entry(index)):
        secrets["index-netrc"] = secret_file(settings, "index-netrc", entry)
    return BuildRequest(
        context=PROJECT_ROOT,
        dockerfile=DOCKERFILE,
        # The variant's image; the project stages after it are a project's build.
        target=names.RUNTIME_STAGE,
        platform=variant.platform,
        build_args=build_args(variant, settings, base_image, lock),
        # The requirements file (the lock, or the plain pins) travels as its own small context;
        # the project stages' contexts are empty here (BuildKit resolves every stage's mount
        # sources, even of stages it does not build) and filled by a project's build.
        contexts={"requirements": requirements_context(variant, settings, lock, base_packages), **empty_project_contexts(settings)},
        secrets=secrets,
        labels=image_labels(variant, settings, lock),
        no_cache=no_cache,
        progress=settings.progress,
        network="host" if index and wheels.is_loopback(index) else None,
    )


def empty_project_contexts(settings: Settings) -> dict[str, Path]:
    empty = settings.work_dir / "empty-context"
    empty.mkdir(parents=True, exist_ok=True)
    return {name: empty for name in names.PROJECT_CONTEXTS}


def secret_file(settings: Settings, name: str, text: str) -> Path:
    """TEXT in a file only its owner reads, for a BuildKit secret."""
    folder = settings.work_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


def requirements_context(variant: Variant, settings: Settings, lock: Lock | None, base_packages: str | None = None) -> Path:
    """The `requirements` build context: the lock split per layer, and beside the app what
    it knows of every variant and, for a locked build on a base whose packages are given,
    the image's SBOM."""
    context = settings.work_dir / "requirements" / variant.build_name
    context.mkdir(parents=True, exist_ok=True)
    text = lock.path.read_text() if lock else "\n".join(variant.requirements) + "\n"
    (context / "requirements.txt").write_text(text)
    from_index = compat.PYTORCH_INDEX_PACKAGES if variant.pytorch_channel else frozenset()
    if lock:
        parts = split_requirements(text, from_index)
    else:
        # An unlocked build resolves its pins at build time, so it cannot know the NVIDIA
        # packages in advance: everything goes into the second layer, from one index.
        parts = {"nvidia": "", "rest": "" if from_index else text, PYTORCH_PART: text if from_index else ""}
    for layer in LAYERS:
        (context / layer).mkdir(exist_ok=True)
        (context / layer / "requirements.txt").write_text(parts[layer])
    # The part of the second layer that comes from the PyTorch index.
    (context / "rest" / f"{PYTORCH_PART}.txt").write_text(parts[PYTORCH_PART])
    # Beside the app: every variant's torch, Python and GPU code, for `verify` and `train`
    # to name the variants that fit where this one does not. So the app layer (small, the
    # last) changes when any variant of the matrix does.
    (context / "app").mkdir(exist_ok=True)
    (context / "app" / variant_facts.FILE_NAME).write_text(variant_facts.variant_facts_json(load_matrix(settings.matrix)))
    made = context / "app" / sbom.FILE_NAME
    if lock and base_packages is not None:
        made.write_text(variant_sbom(variant, settings, lock, base_packages))
    else:
        made.unlink(missing_ok=True)
    return context


def variant_sbom(variant: Variant, settings: Settings, lock: Lock, base_packages: str, project: sbom.ProjectPart | None = None) -> str:
    """The SBOM of VARIANT's image (with PROJECT's part, for a project's), naming the indexes
    its wheels came from without a mirror's credentials."""
    index = wheels.index_url(variant, settings)
    return sbom.image_sbom(variant, lock, base_packages, wheels.pypi_simple_url(), index and wheels.without_credentials(index), project)


def lock_for(variant: Variant, settings: Settings) -> Lock | None:
    """The variant's lock. Without one, a build that allows unlocked builds resolves its
    pins at build time; any other locks the variant first (its wheel source answered), the
    way uv and poetry create a missing lock, and builds from that."""
    lock = read_lock(variant, settings.lock_dir)
    if lock is not None:
        return lock
    if settings.allow_unlocked:
        print(f"torchenv: WARNING: not reproducible: no lock for {variant.name}; resolving its pins at build time", flush=True)
        return None
    print(f"torchenv: {variant.name} has no lock yet: locking it from {wheels.source_description(variant)}", flush=True)
    written = write_lock(variant, settings)
    print(f"torchenv: wrote {display_path(written)}; commit it, so that every build of {variant.name} installs the same files", flush=True)
    return read_lock(variant, settings.lock_dir)


def base_image_for(variant: Variant, settings: Settings) -> str:
    if not variant.debian_suite:
        return variant.base
    reference = ensure_base(variant.debian_suite, settings, variant.platform)
    drift = base_drift(variant.debian_suite, package_list(reference, variant.platform), settings.lock_dir, variant.platform)
    if drift:
        recorded = display_path(base_list_path(variant.debian_suite, settings.lock_dir, variant.platform))
        print(
            f"torchenv: WARNING: the {variant.debian_suite} base differs from {recorded} "
            f"in {len(drift)} package lines (the archive moved on); pin the archive with a snapshot mirror "
            "(TORCHENV_DEBIAN_MIRROR) or record the new list with `invoke lock`",
            flush=True,
        )
    return reference


@contextmanager
def exclusive_build(variant: Variant, settings: Settings) -> Iterator[None]:
    """One build per variant at a time: a second one refuses instead of racing the first."""
    locks = settings.work_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{variant.build_name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TorchenvError(
                f"another build of {variant.build_name} is running on this machine; wait for it to finish, then retry"
            ) from None
        yield


def needed_space_gb(variant: Variant, settings: Settings, lock: Lock | None, layers_present: bool = False) -> float:
    """TORCHENV_MIN_FREE_GB, or an estimate from the lock's wheel sizes (smaller when the
    engine already holds the variant built from this lock: LAYERS_PRESENT)."""
    return settings.min_free_gb or build_needs_gb(lock.wheel_bytes if lock else None, variant.is_cuda, layers_present)


def holds_same_lock(variant: Variant, settings: Settings, lock: Lock | None) -> bool:
    """Whether the engine's image of the variant was built from LOCK: a rebuild's big layers are there."""
    if lock is None:
        return False
    present = engine.get().image(image_tag(variant, settings))
    return present is not None and present.labels.get(Label.LOCK_SHA256) == lock.sha256


def build_variant(variant: Variant, matrix: Matrix, settings: Settings, no_cache: bool = False) -> str:
    """Builds, verifies and tags one variant; returns its tag. Nothing is tagged unless
    the image passed `verify` in a container. NO_CACHE runs every step again, with empty
    cache mounts (so every wheel is downloaded again)."""
    settings.ca_bundle_path()  # a wrong CA bundle path fails here, before anything is made
    wheels.require_reachable(variant, settings)
    lock = lock_for(variant, settings)
    platforms.require_runnable(variant.platform)
    docker = engine.get()
    docker.require()
    layers_present = not no_cache and holds_same_lock(variant, settings, lock)
    require_free_space(needed_space_gb(variant, settings, lock, layers_present), f"a build of {variant.name}")
    with exclusive_build(variant, settings):
        base_image = base_image_for(variant, settings)
        emulated = "" if variant.platform == host_platform() else ", emulated"
        print(
            f"torchenv: building {variant.name} for {variant.platform}{emulated} "
            f"(torch {variant.torch}, CUDA {variant.cuda}, Python {variant.python})",
            flush=True,
        )
        base_packages = debian_packages(base_image, variant.platform)
        request = build_request(variant, settings, base_image, lock, no_cache=no_cache, base_packages=base_packages)
        started = build_records.now()
        result = docker.build(request)
        if result.image_id is None:
            reason = failure_reason(list(result.tail)) or "see BuildKit's output above"
            raise TorchenvError(f"the build of {variant.name} failed: {reason}; nothing was tagged")
        # What the provenance of a push will say this image was made from.
        facts = build_records.facts_of_build(variant, request, lock, base_image, base_packages, started)
        build_records.write_record(result.image_id, facts, settings)
        return verify_and_tag(result.image_id, variant, matrix, settings)


def verify_and_tag(image: str, variant: Variant, matrix: Matrix, settings: Settings) -> str:
    """Runs `verify` in a container of IMAGE and, only when it passed, tags it; returns the variant's tag."""
    docker = engine.get()
    tag = image_tag(variant, settings)
    if docker.image_id(tag) == image:
        # Tags are applied only after verify passed, so this exact image already did.
        print(f"torchenv: {tag} is unchanged ({image[:19]}) and was verified when tagged", flush=True)
        return tag
    print(f"torchenv: verifying {variant.name} ({image[:19]}) in a container before tagging it", flush=True)
    check = docker.run(image, ["verify"], RunOptions(platform=variant.platform, shm_size=settings.container_shm_size()), echo=True)
    if check.exit_code != 0:
        raise TorchenvError(f"{variant.name} built as {image[:19]} but failed verify (report above); nothing was tagged")
    tags = tags_for(image, variant, matrix)
    for name in tags:
        docker.tag(image, f"{settings.image_name}:{name}")
    print(f"torchenv: {tag} is ready, also tagged {', '.join(name for name in tags if name != variant.local_name)}", flush=True)
    return tag


def require_free_space(needed_gb: float, what: str) -> None:
    """Fails in one line when the engine's data root has less free space than a build needs."""
    root = engine.get().data_root()
    if root is None:
        return  # a remote engine: its disk is not ours to measure
    free_gb = shutil.disk_usage(root).free / 1e9
    if free_gb < needed_gb:
        raise TorchenvError(
            f"only {free_gb:.1f} GB free on {root} (Docker's data root); {what} needs about {needed_gb:.0f} GB: "
            "free space (invoke clean removes torchenv's images and cache) or set TORCHENV_MIN_FREE_GB"
        )
