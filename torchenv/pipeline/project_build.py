"""`invoke build --project DIR`: a user's project on top of a variant. The variant first
(built and verified as always), then the project's lock against it, then its packages
and its code as two layers, then `verify` and the project's smoke command in a
container; only then the project's tags."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from torchenv import display_path, engine
from torchenv.engine import BuildRequest, RunOptions
from torchenv.errors import TorchenvError
from torchenv.locking import sbom
from torchenv.locking.locks import Lock
from torchenv.locking.project_locks import ProjectLock, is_current, lock_project, read_project_lock
from torchenv.model import names
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.names import Label
from torchenv.model.platforms import host_platform
from torchenv.model.project import IMAGE_ROOT, NOT_CODE_ANYWHERE, NOT_CODE_AT_TOP, Project, image_repository
from torchenv.model.settings import Settings
from torchenv.pipeline.base import debian_packages, variant_base
from torchenv.pipeline.build import build_request, build_variant, exclusive_build, lock_for, variant_sbom
from torchenv.pipeline.buildlog import failure_reason

# The project's own tests, run inside its image: no cache files on a read-only root.
PYTEST = ("python", "-m", "pytest", "-p", "no:cacheprovider", "-q")


def variant_lock_of(variant: Variant, settings: Settings) -> Lock:
    """The variant's lock, made first if it has none (as `invoke build` does); a project
    builds only on a locked variant."""
    lock = lock_for(variant, dataclasses.replace(settings, allow_unlocked=False))
    assert lock is not None
    return lock


def project_lock_for(project: Project, variant: Variant, variant_lock: Lock, settings: Settings) -> ProjectLock:
    """The project's committed lock for VARIANT when it is current; else locks it anew (its
    requirements or the variant's lock changed), the way a missing variant lock is made."""
    lock = read_project_lock(project, variant)
    if lock is not None and is_current(lock, project, variant_lock):
        return lock
    why = "has no lock" if lock is None else "changed since its lock was made"
    print(f"torchenv: {project.name} {why} for {variant.name}: locking it against {display_path(variant_lock.path)}", flush=True)
    lock = lock_project(project, variant, variant_lock, settings)
    print(f"torchenv: wrote {display_path(lock.path)} ({len(lock.packages)} packages); commit it with the project", flush=True)
    return lock


def project_contexts(project: Project, variant: Variant, lock: ProjectLock, settings: Settings, image_sbom: str) -> dict[str, Path]:
    """The two small build contexts: the project's lock with the image's SBOM (the
    variant's packages and the project's), and its code without its locks, caches and
    local outputs (so those never reach the code layer or bust its cache)."""
    folder = settings.work_dir / "projects" / project.name
    requirements = folder / "requirements" / variant.build_name
    # Apart, so that the packages layer's input is the lock alone.
    for part, name, text in (("packages", "requirements.txt", lock.path.read_text()), ("sbom", sbom.FILE_NAME, image_sbom)):
        (requirements / part).mkdir(parents=True, exist_ok=True)
        (requirements / part / name).write_text(text)
    code = folder / "code"
    if settings.work_dir.resolve().is_relative_to(project.root):
        raise TorchenvError(
            f"torchenv's work folder {display_path(settings.work_dir)} lies inside the project {display_path(project.root)}, "
            "and its build secrets would reach the code layer; move the project out, or point TORCHENV_WORK_DIR elsewhere"
        )
    shutil.rmtree(code, ignore_errors=True)
    # Left out at the project's top only; links are copied as links, not as what they name.
    top = str(project.root)
    shutil.copytree(project.root, code, symlinks=True, ignore=lambda folder, entries: [e for e in entries if left_out(folder == top, e)])
    return dict(zip(names.PROJECT_CONTEXTS, (requirements, code), strict=True))


def left_out(at_top: bool, name: str) -> bool:
    return name in NOT_CODE_ANYWHERE or (at_top and name in NOT_CODE_AT_TOP)


def project_labels(project: Project, lock: ProjectLock) -> dict[str, str]:
    return {Label.PROJECT: project.name, Label.PROJECT_LOCK_SHA256: lock.sha256}


def project_request(
    project: Project, variant: Variant, settings: Settings, base_image: str, variant_lock: Lock, lock: ProjectLock, base_packages: str
) -> BuildRequest:
    """The variant's own build request (so every stage below hits the same cache: its SBOM
    too, made from BASE_PACKAGES), aimed at the project's stage, with the project's
    contexts, arguments and labels added."""
    request = build_request(variant, settings, base_image, variant_lock, base_packages=base_packages)
    part = sbom.ProjectPart(project.name, lock.path.read_text(), lock.sha256)
    image_sbom = variant_sbom(variant, settings, variant_lock, base_packages, part)
    return dataclasses.replace(
        request,
        target=names.PROJECT_STAGE,
        contexts={**request.contexts, **project_contexts(project, variant, lock, settings, image_sbom)},
        build_args={**request.build_args, **project_build_args(project)},
        labels={**request.labels, Label.TITLE: f"torchenv {variant.name} with {project.name}", **project_labels(project, lock)},
    )


def project_build_args(project: Project) -> dict[str, str]:
    """The ARGs of docker/Dockerfile's project stages."""
    return {"PROJECT_NAME": project.name, "PROJECT_PYTHONPATH": project.image_python_path}


def project_tag(project: Project, variant: Variant, settings: Settings) -> str:
    return f"{image_repository(settings.image_name, project)}:{variant.local_name}"


def build_project(project: Project, variant: Variant, matrix: Matrix, settings: Settings) -> str:
    """Builds, checks and tags PROJECT on VARIANT; returns its tag. Nothing is tagged unless
    the image passed `verify` and the project's smoke command in a container."""
    variant_lock = variant_lock_of(variant, settings)
    lock = project_lock_for(project, variant, variant_lock, settings)
    build_variant(variant, matrix, settings)
    docker = engine.get()
    with exclusive_build(variant, settings):
        # The base build_variant checked (and warned about) a moment ago.
        base_image = variant_base(variant, settings)
        print(f"torchenv: building {project.name} on {variant.name} ({len(lock.packages)} packages of its own)", flush=True)
        packages = debian_packages(base_image, variant.platform)
        result = docker.build(project_request(project, variant, settings, base_image, variant_lock, lock, packages))
    if result.image_id is None:
        reason = failure_reason(list(result.tail)) or "see BuildKit's output above"
        raise TorchenvError(f"the build of {project.name} on {variant.name} failed: {reason}; nothing was tagged")
    return check_and_tag(result.image_id, project, variant, matrix, settings, lock)


def check_and_tag(image: str, project: Project, variant: Variant, matrix: Matrix, settings: Settings, lock: ProjectLock) -> str:
    docker = engine.get()
    tag = project_tag(project, variant, settings)
    if docker.image_id(tag) == image:
        print(f"torchenv: {tag} is unchanged ({image[:19]}) and passed its checks when tagged", flush=True)
        return tag
    options = RunOptions(platform=variant.platform, shm_size=settings.container_shm_size())
    for what, command in (("verify", ["verify"]), ("its smoke command", list(project.smoke))):
        print(f"torchenv: {project.name} on {variant.name} ({image[:19]}): running {what} in a container before tagging", flush=True)
        check = docker.run(image, command, options, echo=True)
        if check.exit_code != 0:
            raise TorchenvError(
                f"{project.name} on {variant.name} built as {image[:19]} but {what} ({' '.join(command)}) exited {check.exit_code} "
                "(output above); nothing was tagged"
            )
    repository = image_repository(settings.image_name, project)
    native = variant.platform == host_platform()
    tags = names.project_tag_names(variant.local_name, lock.sha256, latest=native and variant.name == matrix.default_variant)
    for name in tags:
        docker.tag(image, f"{repository}:{name}")
    print(f"torchenv: {tag} is ready, also tagged {', '.join(name for name in tags if name != variant.local_name)}", flush=True)
    return tag


def project_tests(image: str, project: Project, variant: Variant, settings: Settings, out: Path | None = None) -> int:
    """The project's own tests, with pytest inside a hardened container of IMAGE (OUT, when
    given, mounted on /out); returns pytest's exit code."""
    if project.tests is None:
        print(f"torchenv: {project.name} declares no tests ([tool.torchenv] tests); nothing to run in the container", flush=True)
        return 0
    volumes = {str(out): ("/out", "rw")} if out else {}
    options = RunOptions(platform=variant.platform, shm_size=settings.container_shm_size(), volumes=volumes)
    print(f"torchenv: running {project.name}'s tests ({project.tests}) in a container of {image[:40]}", flush=True)
    return engine.get().run(image, [*PYTEST, f"{IMAGE_ROOT}/{project.tests}"], options, echo=True).exit_code
