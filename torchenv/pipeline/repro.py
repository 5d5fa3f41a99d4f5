"""`invoke repro`: build a variant twice from scratch and show whether the images are the
same, byte for byte, or which files in which layers differ."""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, replace
from typing import IO

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.locking.locks import Lock
from torchenv.model import names
from torchenv.model.matrix import Variant
from torchenv.model.project import Project
from torchenv.model.records import Comparison, ReproReport
from torchenv.model.settings import Settings
from torchenv.pipeline.base import debian_packages, make_base, variant_base
from torchenv.pipeline.build import build_request, lock_for
from torchenv.pipeline.buildlog import failure_reason
from torchenv.pipeline.project_build import project_lock_for, project_request, variant_lock_of


@dataclass(frozen=True)
class Entry:
    """What a layer says of one file: the fields that make two layers differ."""

    kind: str
    size: int
    mode: int
    owner: str
    mtime: float
    content: str


def layer_diff_ids(image: str) -> list[str]:
    return list(engine.get().require_image(image).layers)


def layer_entries(image: str, wanted: set[str]) -> dict[str, dict[str, Entry]]:
    """The files of the wanted layers (by diff ID), read from `docker save` as it streams."""
    found: dict[str, dict[str, Entry]] = {}
    with engine.get().saved(image) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            digest = "sha256:" + member.name.rsplit("/", 1)[-1]
            if member.isfile() and member.name.startswith("blobs/sha256/") and digest in wanted:
                blob = archive.extractfile(member)
                assert blob is not None
                found[digest] = read_layer(blob)
    return found


def read_layer(blob: IO[bytes]) -> dict[str, Entry]:
    entries = {}
    with tarfile.open(fileobj=blob, mode="r|") as layer:
        for member in layer:
            content = ""
            if member.isfile():
                data = layer.extractfile(member)
                assert data is not None
                content = hashlib.sha256(data.read()).hexdigest()
            elif member.issym() or member.islnk():
                content = "-> " + member.linkname
            kind = "file" if member.isfile() else "dir" if member.isdir() else "link" if member.issym() or member.islnk() else "other"
            entries[member.name] = Entry(kind, member.size, member.mode, f"{member.uid}:{member.gid}", member.mtime, content)
    return entries


def compare(first: str, second: str, limit: int = 20) -> list[str]:
    """Lines describing every difference between two images' layers; empty if none."""
    layers_a, layers_b = layer_diff_ids(first), layer_diff_ids(second)
    if len(layers_a) != len(layers_b):
        return [f"layer count differs: {len(layers_a)} vs {len(layers_b)}"]
    differing = [(index, a, b) for index, (a, b) in enumerate(zip(layers_a, layers_b, strict=True)) if a != b]
    if not differing:
        return []
    files_a = layer_entries(first, {a for _, a, _ in differing})
    files_b = layer_entries(second, {b for _, _, b in differing})
    report = []
    for index, a, b in differing:
        count, lines = changed_paths(files_a.get(a, {}), files_b.get(b, {}), limit)
        report += [f"layer {index + 1}: {a[7:19]} vs {b[7:19]}: {count} paths differ", *lines]
    return report


def changed_paths(entries_a: dict[str, Entry], entries_b: dict[str, Entry], limit: int = 20) -> tuple[int, list[str]]:
    """How many paths differ between two layers' files, and a line for each (up to LIMIT)."""
    changed = sorted(name for name in entries_a.keys() | entries_b.keys() if entries_a.get(name) != entries_b.get(name))
    lines = [f"  {name}: {_describe(entries_a.get(name))}  vs  {_describe(entries_b.get(name))}" for name in changed[:limit]]
    if len(changed) > limit:
        lines.append(f"  ... and {len(changed) - limit} more")
    return len(changed), lines


def _describe(entry: Entry | None) -> str:
    if entry is None:
        return "absent"
    return f"{entry.kind} size={entry.size} mode={entry.mode:o} owner={entry.owner} mtime={entry.mtime:.0f} {entry.content[:16]}"


def build_from_scratch(variant: Variant, settings: Settings, base_image: str, lock: Lock | None) -> str:
    """One --no-cache build of the variant; returns the image ID (untagged)."""
    request = build_request(variant, settings, base_image, lock, no_cache=True, base_packages=debian_packages(base_image, variant.platform))
    result = engine.get().build(request)
    if result.image_id is None:
        raise TorchenvError(f"a from-scratch build of {variant.name} failed: {failure_reason(list(result.tail)) or 'see the output above'}")
    return result.image_id


def reproduce_project(project: Project, variant: Variant, settings: Settings) -> Comparison:
    """Builds PROJECT's stage on VARIANT twice, its steps from scratch (the variant's from
    the cache: `reproduce` proves those), and compares the two images."""
    variant_lock = variant_lock_of(variant, settings)
    lock = project_lock_for(project, variant, variant_lock, settings)
    base_image = variant_base(variant, settings)
    packages = debian_packages(base_image, variant.platform)
    request = replace(
        project_request(project, variant, settings, base_image, variant_lock, lock, packages), no_cache_stages=(names.PROJECT_STAGE,)
    )
    built = []
    for _ in range(2):
        result = engine.get().build(request)
        if result.image_id is None:
            reason = failure_reason(list(result.tail)) or "see the output above"
            raise TorchenvError(f"a from-scratch build of {project.name} on {variant.name} failed: {reason}")
        built.append(result.image_id)
    return Comparison(f"{variant.name} with project {project.name}", built[0], built[1], tuple(compare(*built)))


def reproduce(variant: Variant, settings: Settings, project: Project | None = None) -> ReproReport:
    """Builds the base and the variant twice each, from scratch, and compares them; with
    PROJECT, then the project's layers on it twice as well."""
    docker = engine.get()
    docker.require()
    lock = lock_for(variant, settings)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    comparisons = []
    bases = []
    records_before = set(docker.build_cache_ids())
    try:
        if variant.debian_suite:
            for attempt in ("a", "b"):
                reference = f"torchenv-repro-base:{variant.debian_suite}-{attempt}"
                bases.append(reference)
                make_base(variant.debian_suite, settings, reference, no_cache=True, platform=variant.platform)
            base_a, base_b = (docker.require_image(reference).id for reference in bases)
            comparisons.append(Comparison(f"base {variant.base}", base_a, base_b, tuple(compare(*bases))))
            base_image = bases[0]
        else:
            base_image = variant.base
        first = build_from_scratch(variant, settings, base_image, lock)
        release_new_cache(records_before)  # keep one from-scratch venv on disk at a time, not two
        second = build_from_scratch(variant, settings, base_image, lock)
        comparisons.append(Comparison(variant.name, first, second, tuple(compare(first, second))))
        if project is not None:
            comparisons.append(reproduce_project(project, variant, settings))
    finally:
        for reference in bases:
            docker.remove_image(reference)
        release_new_cache(records_before)
    return ReproReport(variant.name, tuple(comparisons))


def release_new_cache(records_before: set[str]) -> None:
    """Prunes the build cache records made since RECORDS_BEFORE: from-scratch builds
    duplicate the variant's big layers (a torch venv is ~5 GB); the regular cache stays."""
    for record in engine.get().build_records_since(records_before):
        engine.get().prune_build_cache(record)
