"""The bench's figures and their targets, defined once: how each is shown from a variant's
measured sizes and times, and whether it met its target. bench/performance.py measures
and writes bench/results/latest.json; its table and the docs' performance block are both
made from these definitions."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv import PROJECT_ROOT
from torchenv.model.records import BenchResults, VariantFigures

# What `invoke bench` measures unless told otherwise: the default, the torch 2.0 variant
# that compiles, and the CUDA 12 one.
BENCH_VARIANTS = "cu117,cu117-py39,cu121"
BENCH_RESULTS = PROJECT_ROOT / "bench" / "results" / "latest.json"
GB = 1e9


@dataclass(frozen=True)
class Figure:
    """One metric of the bench: how a variant's figures show it, and its target."""

    metric: str
    # (what the cell shows, the value judged against the target), or None if not measured.
    measure: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[str, float] | None]
    target: float
    unit: str = "x"
    at_least: bool = False  # the target is a floor (>=), not a ceiling (<=)

    def bound(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.target:g}{self.unit}"

    def met(self, value: float) -> bool:
        return value >= self.target if self.at_least else value <= self.target


def ratio(part: float, whole: float, unit: str, scale: float = 1) -> tuple[str, float]:
    return f"{part / scale:.2f} / {whole / scale:.2f} {unit} = {part / whole:.2f}x", part / whole


def cold_build(times: Mapping[str, Any]) -> tuple[str, float] | None:
    if "cold_build" not in times:  # measured only with `invoke bench --cold`
        return None
    floor = times["floor_download"] + times["floor_install"]
    shown = f"{times['cold_build']:.0f} / ({times['floor_download']:.0f} + {times['floor_install']:.0f}) s"
    return f"{shown} = {times['cold_build'] / floor:.2f}x", times["cold_build"] / floor


def seconds(value: float) -> tuple[str, float]:
    return f"{value:.1f} s", value


def throughput(container: float, host: float) -> tuple[str, float]:
    return f"{container / 1e3:.0f}k / {host / 1e3:.0f}k samples/s = {container / host:.2f}x", container / host


# Every figure the bench reports, with its target: the bench's own table (`invoke bench`,
# `invoke report`) and the docs' performance block are both made from these.
# Keys: s = the variant's "sizes", t = its "times".
FIGURES = (
    Figure("image / naive single-stage image (uncompressed)", lambda s, t: ratio(s["image"], s["naive_image"], "GB", GB), 0.95),
    Figure(
        "image - installed size of the locked wheels (untrimmed)",
        lambda s, t: (f"{(s['image'] - s['wheels_installed']) / 1e6:.0f} MB", (s["image"] - s["wheels_installed"]) / 1e6),
        400,
        " MB",
    ),
    Figure(
        "pushed with zstd (`invoke push`) / naive pushed with gzip",
        lambda s, t: ratio(s["zstd"], s["naive_gzip"], "GB", GB) if s.get("zstd") else None,
        0.9,
    ),
    Figure(
        "pushed with gzip (`--compression gzip`) / naive pushed with gzip", lambda s, t: ratio(s["gzip"], s["naive_gzip"], "GB", GB), 0.9
    ),
    Figure("cold build / floor (download + uv install)", lambda s, t: cold_build(t), 1.3),
    Figure("rebuild after editing the demo", lambda s, t: seconds(t["demo_edit_rebuild"]), 10, " s"),
    Figure("no-op rebuild", lambda s, t: seconds(t["no_op_rebuild"]), 5, " s"),
    Figure("`docker compose run verify` (CPU)", lambda s, t: seconds(t["compose_verify"]), 8, " s"),
    Figure(
        "`import torch`: container / host, same wheels",
        lambda s, t: ratio(t["import_torch_container"], t["import_torch_host"], "s"),
        1.1,
    ),
    Figure(
        "training throughput: container / host, same wheels",
        lambda s, t: throughput(t["train_samples_per_s_container"], t["train_samples_per_s_host"]),
        0.97,
        at_least=True,
    ),
)


def load_results(path: Path = BENCH_RESULTS) -> BenchResults:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no bench results yet; run ./invokew bench first")
    return BenchResults.from_json(json.loads(path.read_text()))


def measured(results: BenchResults) -> list[tuple[Figure, dict[str, tuple[str, float] | None]]]:
    """Each figure with its (cell, value) per variant, None where that variant lacks it."""
    return [(figure, {name: figure.measure(v.sizes, v.times) for name, v in results.variants.items()}) for figure in FIGURES]


def verdict(figure: Figure, values: Mapping[str, tuple[str, float] | None]) -> str:
    judged = {name: figure.met(value[1]) for name, value in values.items() if value is not None}
    if all(judged.values()):
        outcome = "met"
    elif not any(judged.values()):
        outcome = "missed"
    else:
        outcome = "met on " + ", ".join(name for name, met in judged.items() if met)
    return f"{figure.bound()}: {outcome}"


def rows(name: str, figures: VariantFigures) -> list[tuple[str, str, str, str, str]]:
    """One variant's (variant, metric, measured, ratio or figure, target) rows, the figures
    it has; a target cell ends in 'met' or 'missed'."""
    found = []
    for figure in FIGURES:
        value = figure.measure(figures.sizes, figures.times)
        if value is not None:
            cell, judged = value
            outcome = "met" if figure.met(judged) else "missed"
            found.append((name, figure.metric, cell, f"{judged:.2f}{figure.unit}", f"{figure.bound()}: {outcome}"))
    return found
