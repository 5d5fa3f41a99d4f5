"""`invoke repro --against REF`: rebuild the variant from this commit and its lock, push
the rebuild the way REF was pushed (zstd at REF's level, or gzip) to a registry of
torchenv's own on 127.0.0.1, and compare the two: the same manifest digest, or which
config fields and which layers (by position, then by their files) differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.records import Comparison
from torchenv.model.settings import Settings
from torchenv.pipeline import published, repro, scratch_registry, zstd_layout, zstd_push
from torchenv.pipeline.build import build_variant
from torchenv.pipeline.published import Layer, Published

SCRATCH_REPOSITORY = "torchenv-repro"
# The layers are compared by position, so the config's list of them is left to that.
LAYER_LIST = "rootfs.diff_ids"


def flattened(value: Any, prefix: str = "") -> dict[str, str]:
    """A config as dotted paths to JSON values, lists by position:
    {"config.Env.0": '"PATH=..."', "history.4.created_by": '"RUN ..."', ...}."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is not None and value:
        out: dict[str, str] = {}
        for key, inner in items:
            out |= flattened(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: json.dumps(value, sort_keys=True)}


def _short(value: str | None) -> str:
    if value is None:
        return "absent"
    return value if len(value) <= 160 else value[:157] + "..."


def config_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    a, b = flattened(theirs), flattened(ours)
    keys = sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key) and not key.startswith(LAYER_LIST))
    return [f"config {key}: {_short(a.get(key))} vs {_short(b.get(key))}" for key in keys]


def layer_differences(theirs: Published, ours: Published, ours_image: str, work_dir: Path) -> list[str]:
    a, b = theirs.layers, ours.layers
    lines = [f"layer count differs: {len(a)} vs {len(b)}"] if len(a) != len(b) else []
    other_files: list[tuple[int, Layer, Layer]] = []
    for index, (mine, rebuilt) in enumerate(zip(a, b, strict=False)):
        if mine.digest == rebuilt.digest:
            continue
        if mine.diff_id == rebuilt.diff_id:
            lines.append(
                f"layer {index + 1}: the same files (diff ID {mine.diff_id[7:19]}), compressed differently: "
                f"{mine.digest[7:19]} ({mine.media_type}) vs {rebuilt.digest[7:19]} ({rebuilt.media_type})"
            )
        else:
            other_files.append((index, mine, rebuilt))
    if other_files:
        entries_b = repro.layer_entries(ours_image, {rebuilt.diff_id for _, _, rebuilt in other_files})
        with published.fetched(theirs, work_dir) as layout:
            for index, mine, rebuilt in other_files:
                with published.layer_stream(layout, mine) as stream:
                    entries_a = repro.read_layer(stream)
                count, paths = repro.changed_paths(entries_a, entries_b.get(rebuilt.diff_id, {}))
                lines += [
                    f"layer {index + 1}: other files (diff ID {mine.diff_id[7:19]} vs {rebuilt.diff_id[7:19]}): {count} paths differ",
                    *paths,
                ]
    return lines


def differences(theirs: Published, ours: Published, ours_image: str, work_dir: Path) -> list[str]:
    """Empty when the manifests are the same; else a line per differing field and layer."""
    if theirs.digest == ours.digest:
        return []
    lines = []
    if theirs.annotations != ours.annotations:
        lines.append(
            f"manifest annotations: {json.dumps(theirs.annotations, sort_keys=True)} vs {json.dumps(ours.annotations, sort_keys=True)}"
        )
    lines += config_differences(theirs.config, ours.config)
    lines += layer_differences(theirs, ours, ours_image, work_dir)
    return lines or [f"manifest: {theirs.digest} vs {ours.digest}: the same config and layers, another manifest"]


def level_of(theirs: Published, settings: Settings) -> int | None:
    """REF's zstd level (from its annotation; the settings' where it has none), or None for gzip."""
    if theirs.zstd:
        return int(theirs.annotations.get(zstd_layout.LEVEL_ANNOTATION, settings.zstd_level))
    if all(layer.media_type in zstd_layout.GZIP_LAYER_MEDIA_TYPES for layer in theirs.layers):
        return None
    kinds = ", ".join(sorted({layer.media_type for layer in theirs.layers}))
    raise TorchenvError(f"{theirs.reference} has layers torchenv does not push ({kinds}); compare an image that invoke push made")


def reproduce_against(reference: str, variant: Variant, matrix: Matrix, settings: Settings) -> Comparison:
    docker = engine.get()
    docker.require()
    theirs = published.read(reference, variant.platform)
    level = level_of(theirs, settings)
    image_id = docker.require_image(build_variant(variant, matrix, settings)).id
    with scratch_registry.serving(settings.work_dir, "invoke repro --against") as scratch:
        target = f"{scratch.address}/{SCRATCH_REPOSITORY}:{variant.name}"
        if level is not None:
            zstd_push.push(image_id, [target], scratch.address, settings.work_dir, level)
        else:
            docker.tag(image_id, target)
            try:
                docker.push(target)
            finally:
                docker.remove_image(target)
        ours = published.read(target, variant.platform)
        found = differences(theirs, ours, image_id, settings.work_dir)
    return Comparison(f"{variant.name} rebuilt from this commit, against {reference}", theirs.digest, ours.digest, tuple(found))
