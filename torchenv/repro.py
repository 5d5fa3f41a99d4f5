"""`invoke repro`: build a variant twice from scratch and show whether the images are the
same, byte for byte, or which files in which layers differ."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from torchenv import engine
from torchenv.base import make_base
from torchenv.build import buildx_command, lock_for
from torchenv.buildlog import failure_reason, run_streaming
from torchenv.errors import TorchenvError
from torchenv.locks import Lock
from torchenv.matrix import Variant
from torchenv.settings import Settings


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
    return json.loads(engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout)


def layer_entries(image: str, wanted: set[str]) -> dict[str, dict[str, Entry]]:
    """The files of the wanted layers (by diff ID), read from `docker save` as it streams."""
    found: dict[str, dict[str, Entry]] = {}
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
            for member in archive:
                digest = "sha256:" + member.name.rsplit("/", 1)[-1]
                if member.isfile() and member.name.startswith("blobs/sha256/") and digest in wanted:
                    blob = archive.extractfile(member)
                    assert blob is not None
                    found[digest] = _read_layer(blob)
        save.stdout.read()
    return found


def _read_layer(blob: IO[bytes]) -> dict[str, Entry]:
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
        entries_a, entries_b = files_a.get(a, {}), files_b.get(b, {})
        changed = sorted(name for name in entries_a.keys() | entries_b.keys() if entries_a.get(name) != entries_b.get(name))
        report.append(f"layer {index + 1}: {a[7:19]} vs {b[7:19]}: {len(changed)} paths differ")
        for name in changed[:limit]:
            report.append(f"  {name}: {_describe(entries_a.get(name))}  vs  {_describe(entries_b.get(name))}")
        if len(changed) > limit:
            report.append(f"  ... and {len(changed) - limit} more")
    return report


def _describe(entry: Entry | None) -> str:
    if entry is None:
        return "absent"
    return f"{entry.kind} size={entry.size} mode={entry.mode:o} owner={entry.owner} mtime={entry.mtime:.0f} {entry.content[:16]}"


def build_from_scratch(variant: Variant, settings: Settings, base_image: str, lock: Lock | None) -> str:
    """One --no-cache build of the variant; returns the image ID (untagged)."""
    with tempfile.TemporaryDirectory(prefix="repro-", dir=settings.work_dir) as scratch:
        iidfile = Path(scratch) / "iid"
        command = buildx_command(variant, settings, base_image, iidfile, lock, no_cache=True)
        returncode, output = run_streaming(command)
        if returncode != 0:
            raise TorchenvError(f"a from-scratch build of {variant.name} failed: {failure_reason(output) or 'see the output above'}")
        return iidfile.read_text().strip()


def reproduce(variant: Variant, settings: Settings) -> list[str]:
    """Builds the base and the variant twice each, from scratch; returns the report."""
    engine.require_engine()
    lock = lock_for(variant, settings)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    report = []
    bases = []
    records_before = set(engine.build_cache_ids(""))
    try:
        if variant.debian_suite:
            for attempt in ("a", "b"):
                reference = f"torchenv-repro-base:{variant.debian_suite}-{attempt}"
                bases.append(reference)
                make_base(variant.debian_suite, settings, reference, no_cache=True, platform=variant.platform)
            base_a, base_b = (engine.image_id(reference) for reference in bases)
            differences = compare(*bases)
            report.append(f"base {variant.base}: " + (f"identical: {base_a}" if not differences else f"DIFFERENT: {base_a} vs {base_b}"))
            report += differences
            base_image = bases[0]
        else:
            base_image = variant.base
        first = build_from_scratch(variant, settings, base_image, lock)
        release_new_cache(records_before)  # keep one from-scratch venv on disk at a time, not two
        second = build_from_scratch(variant, settings, base_image, lock)
        differences = compare(first, second)
        report.append(f"{variant.name}: " + (f"identical: {first}" if not differences else f"DIFFERENT: {first} vs {second}"))
        report += differences
    finally:
        for reference in bases:
            engine.docker("image", "rm", reference, check=False)
        release_new_cache(records_before)
    return report


def release_new_cache(records_before: set[str]) -> None:
    """Prunes the build cache records made since RECORDS_BEFORE: from-scratch builds
    duplicate the variant's big layers (a torch venv is ~5 GB); the regular cache stays."""
    for record in engine.build_records_since(records_before):
        engine.prune_build_cache(record)
