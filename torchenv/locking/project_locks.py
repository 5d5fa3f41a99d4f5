"""A project's lock: its requirements resolved with uv against its variant's lock as
constraints, so that torch, numpy, triton and the NVIDIA libraries stay exactly as the
variant pins them, and only the packages the variant lacks, with their hashes, written to
<project>/locks/<variant>.txt. Builds install exactly that (--require-hashes --no-deps)."""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from torchenv import display_path, statefiles
from torchenv.errors import TorchenvError
from torchenv.locking import wheels
from torchenv.locking.layering import normalised, requirement_entries
from torchenv.locking.locks import HEADER_FIELD, Lock, locked_packages, pins_in, uv_compile, without_epoch, write_wanted
from torchenv.model import compat
from torchenv.model.matrix import Variant
from torchenv.model.project import LOCK_FOLDER, Project
from torchenv.model.settings import Settings

# uv's line annotations: "numpy==2.3.1  # via pandas, transformers".
ANNOTATED_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?:\s+#\s+via\s+(?P<via>.*))?$")


@dataclass(frozen=True)
class ProjectLock:
    path: Path
    sha256: str
    source_date_epoch: int
    # What it was made from: the project's requirements, and the variant lock (by sha256).
    inputs_sha256: str
    variant_lock_sha256: str

    @property
    def packages(self) -> dict[str, str]:
        return pins_in(self.path.read_text())


def project_lock_path(project: Project, variant: Variant) -> Path:
    return project.root / LOCK_FOLDER / f"{variant.build_name}.txt"


def inputs_sha256(project: Project) -> str:
    return hashlib.sha256("\n".join(project.requirements).encode()).hexdigest()


def read_project_lock(project: Project, variant: Variant) -> ProjectLock | None:
    """The project's lock for VARIANT as committed, or None if it has none."""
    path = project_lock_path(project, variant)
    if not path.exists():
        return None
    text = path.read_text()
    fields = {m["key"]: m["value"] for line in text.splitlines() if (m := HEADER_FIELD.match(line))}
    try:
        return ProjectLock(
            path=path,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            source_date_epoch=int(fields["source-date-epoch"]),
            inputs_sha256=fields["inputs"],
            variant_lock_sha256=fields["variant-lock"],
        )
    except (KeyError, ValueError):
        raise TorchenvError(f"{display_path(path)} lacks torchenv's header; delete it and build again to lock the project anew") from None


def is_current(lock: ProjectLock, project: Project, variant_lock: Lock) -> bool:
    """Made from the project's requirements as they are now, against the variant's lock as it is now."""
    return lock.inputs_sha256 == inputs_sha256(project) and lock.variant_lock_sha256 == variant_lock.sha256


def refuse_moves(project: Project, variant: Variant, variant_lock: Lock) -> None:
    """A requirement of the project itself that the variant's pins do not satisfy (numpy>=2
    on a variant pinning numpy 1.26) is refused before anything is resolved, naming both."""
    pins = locked_packages(variant_lock)
    for text in project.requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise TorchenvError(f"{display_path(project.pyproject)}: {text!r} is not a valid requirement ({error})") from None
        if requirement.marker and not requirement.marker.evaluate(marker_environment(variant)):
            continue  # not for this variant's Python or platform
        name = normalised(requirement.name)
        pinned = pins.get(name)
        if pinned and requirement.specifier and not requirement.specifier.contains(pinned, prereleases=True):
            raise TorchenvError(
                f"{project.name} requires {text}, but {variant.name} pins {name}=={pinned} ({display_path(variant_lock.path)}) "
                f"and a project may not move it; relax that requirement, or choose a variant whose lock fits; nothing was built"
            )


def marker_environment(variant: Variant) -> dict[str, str]:
    """The PEP 508 marker values of the variant's image (the rest are the defaults)."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(variant.arch, variant.arch)
    # Every Python key: a missing one would be filled in from the host's own Python.
    full = f"{variant.python}.0"
    return {
        "python_version": variant.python,
        "python_full_version": full,
        "implementation_name": "cpython",
        "implementation_version": full,
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_system": "Linux",
        "platform_machine": machine,
    }


def lock_project(project: Project, variant: Variant, variant_lock: Lock, settings: Settings) -> ProjectLock:
    """Resolves the project's requirements on VARIANT with its lock as constraints and
    writes the project's lock; a package that would move a pinned one is refused in one line."""
    refuse_moves(project, variant, variant_lock)
    pins = locked_packages(variant_lock)
    index = wheels.index_url(variant, settings)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        (scratch / "constraints.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        wanted = write_wanted(scratch, variant, index, project.requirements)
        arguments = ["--generate-hashes", "--constraint", "constraints.txt", "--output-file", "resolved.txt", wanted.name]
        result = uv_compile(variant, settings, scratch, arguments)
        if result.returncode != 0:
            raise TorchenvError(unresolvable(project, variant, variant_lock, settings, result.stderr))
        resolved = (scratch / "resolved.txt").read_text()
    own = "".join(line for name, lines in requirement_entries(resolved) if name not in pins for line in lines)
    header = [
        f"# torchenv lock for project {project.name} on variant {variant.name}: torch {variant.torch}, CUDA {variant.cuda}, "
        f"Python {variant.python}.",
        f"# Made by `invoke build --variant {variant.name} --project ...` against {display_path(variant_lock.path)}, whose "
        "packages it leaves out; builds install exactly this (--require-hashes --no-deps).",
        f"# inputs: {inputs_sha256(project)}",
        f"# variant-lock: {variant_lock.sha256}",
        f"# platform: {variant.platform}",
        f"# source-date-epoch: {int(time.time())}",
    ]
    text = "\n".join(header) + "\n" + own
    target = project_lock_path(project, variant)
    if not (target.exists() and without_epoch(target.read_text()) == without_epoch(text)):
        try:
            target.parent.mkdir(exist_ok=True)
            statefiles.write_text(target, text)
        except OSError as error:
            raise TorchenvError(f"cannot write {display_path(target)} ({error.strerror}); make the project folder writable") from None
    lock = read_project_lock(project, variant)
    assert lock is not None
    return lock


def release(version: str) -> str:
    return version.split("+", 1)[0]


def unresolvable(project: Project, variant: Variant, variant_lock: Lock, settings: Settings, stderr: str) -> str:
    """Why the project cannot be locked on VARIANT, in one line: the pinned package that its
    dependencies want moved (found by resolving them without the variant's constraints but
    preferring its pins, which uv does for the versions already in its output file, so that
    only what must move moves), or else uv's own last words."""
    pins = locked_packages(variant_lock)
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        (scratch / "requirements.in").write_text("\n".join(project.requirements) + "\n")
        (scratch / "free.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        free = uv_compile(variant, settings, scratch, ["--annotation-style", "line", "--output-file", "free.txt", "requirements.in"])
        lines = (scratch / "free.txt").read_text().splitlines() if free.returncode == 0 else []
    found = [match for line in lines if (match := ANNOTATED_PIN.match(line.strip()))]
    # A local label is the index's build name (2.0.1+cpu), not another release.
    moved = [match for match in found if release(pins.get(normalised(match["name"]), match["version"])) != release(match["version"])]
    if moved:
        # torch and its kin first: what a user must hear about when several moved.
        match = min(moved, key=lambda m: not compat.is_core_package(normalised(m["name"])))
        name, version = normalised(match["name"]), match["version"]
        via = (match["via"] or "the project").replace("-r requirements.in", "the project")
        return (
            f"{project.name} cannot be locked on {variant.name}: its dependencies want {name} {version} (via {via}), "
            f"but {variant.name} pins {name}=={pins[name]} ({display_path(variant_lock.path)}) and a project may not move it; "
            "bound the package that wants it to an older release, or choose another variant; nothing was built"
        )
    said = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return f"uv could not lock {project.name} on {variant.name}: {' '.join(said[-3:])}; nothing was built"
