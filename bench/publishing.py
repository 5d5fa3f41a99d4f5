"""The publishing path, measured side by side with the naive image (bench/naive, pushed
with `docker push`, gzip): the push at each zstd level and number of compression threads,
and pull-to-ready on an empty second engine (bench/pull_ready.py).

Run from the project root:  ./invokew bench --publishing   (or python -m bench.publishing
[--variant cu117] [--levels 3,6,9,12] [--pairs 5] [--floor-pairs 2] [--skip-push] [--skip-pull]).
Results go to bench/results/publishing.json; docs/performance/publishing.md shows them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import performance, pull_ready
from bench.performance import WORK, local_registry, naive_image, pushed_layers, quiet
from torchenv import PROJECT_ROOT, engine
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline import zstd_layout, zstd_push
from torchenv.pipeline.build import build_variant, image_tag, lock_for

RESULTS = PROJECT_ROOT / "bench" / "results" / "publishing.json"
REPORT = PROJECT_ROOT / "docs" / "performance" / "publishing.md"
REPOSITORY = "bench"


def push_gzip(image: str, registry: str) -> int:
    """`docker push` of IMAGE (gzip, the engine's own); returns the bytes the registry holds."""
    return sum(performance.push_gzip(image, registry, REPOSITORY, "gzip"))


def push_zstd(image: str, registry: str, level: int) -> int:
    """`invoke push`'s zstd path with an empty layer cache; returns the bytes the registry holds."""
    with tempfile.TemporaryDirectory(prefix="push-bench-", dir=WORK) as work:
        zstd_push.push(engine.get().require_image(image).id, [f"{registry}/{REPOSITORY}:zstd"], registry, Path(work), level)
    return sum(pushed_layers(registry, REPOSITORY, "zstd"))


def trial(push: Callable[[str], int]) -> dict[str, float]:
    """One push into a registry of its own (so that no blob is already there)."""
    with local_registry() as registry:
        start = time.perf_counter()
        size = push(registry)
        return {"seconds": time.perf_counter() - start, "bytes": size}


def push_rows(image: str, naive: str, levels: list[int], one_thread_level: int) -> dict[str, Any]:
    """The naive gzip push before and after the rest (its median is the baseline); our
    image with gzip; zstd at each level on every core, and ONE_THREAD_LEVEL on one."""
    cores = zstd_layout.workers()
    rows: dict[str, Any] = {"cores": cores, "naive gzip": [trial(lambda r: push_gzip(naive, r))]}
    rows["torchenv gzip"] = trial(lambda r: push_gzip(image, r))
    for level in levels:
        print(f"bench: push, zstd level {level} on {cores} threads", file=sys.stderr)
        rows[f"zstd {level} x{cores}"] = trial(lambda r, level=level: push_zstd(image, r, level))
    original = zstd_layout.workers
    zstd_layout.workers = lambda: 1  # type: ignore[assignment]
    try:
        rows[f"zstd {one_thread_level} x1"] = trial(lambda r: push_zstd(image, r, one_thread_level))
    finally:
        zstd_layout.workers = original  # type: ignore[assignment]
    rows["naive gzip"].append(trial(lambda r: push_gzip(naive, r)))
    return rows


def push_table(rows: dict[str, Any]) -> str:
    naive = rows["naive gzip"]
    seconds = statistics.median(t["seconds"] for t in naive)
    size = statistics.median(t["bytes"] for t in naive)
    lines = [
        f"| push ({rows['cores']} cores, registry on 127.0.0.1) | pushed GB | vs naive size | push s | vs naive time |",
        "| --- | --- | --- | --- | --- |",
        f"| naive, `docker push` (gzip), median of {len(naive)} | {size / 1e9:.2f} | 1.00 | {seconds:.0f} | 1.00 |",
    ]
    for name, row in rows.items():
        if name in ("cores", "naive gzip"):
            continue
        pushed, took = row["bytes"], row["seconds"]
        lines.append(f"| torchenv, {name} | {pushed / 1e9:.2f} | {pushed / size:.2f} | {took:.0f} | {took / seconds:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--levels", default="3,6,9,12")
    parser.add_argument("--one-thread-level", type=int, default=9, help="the level also measured on one compression thread")
    parser.add_argument("--pairs", type=int, default=5, help="ABBA pairs of pull-to-ready trials (0: keep the earlier classic rows)")
    parser.add_argument("--containerd-pairs", type=int, default=2, help="ABBA pairs with the containerd image store (the second row)")
    parser.add_argument(
        "--floor-pairs", type=int, default=2, help="ABBA pairs against the same image uncompressed (the engine's floor, classic store)"
    )
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--skip-pull", action="store_true")
    args = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    variant = matrix.get(args.variant)
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    measured_before = results.get("pull", {}).get("measured", results.get("measured"))
    push_measured = results.get("push_measured", results.get("measured"))
    results |= {"variant": variant.name, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(f"bench: building {variant.name} and the naive image (log: {WORK / 'bench.log'})", file=sys.stderr)
    quiet(lambda: build_variant(variant, matrix, settings))
    naive = naive_image(variant, settings, lock_for(variant, settings))
    image = image_tag(variant, settings)
    if not args.skip_push:
        levels = [int(level) for level in args.levels.split(",")]
        results["push"] = push_rows(image, naive, levels, args.one_thread_level)
        results["push_measured"] = push_measured = results["measured"]
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.skip_pull:
        earlier = results.get("pull", {})
        # The floor is a classic-store row, set against the classic pairs' naive trials: with
        # --pairs 0 it stays from the same earlier run as they do.
        floor_pairs = args.floor_pairs if args.pairs else 0
        results["pull"] = pull_ready.measure(image, naive, settings.zstd_level, args.pairs, args.containerd_pairs, floor_pairs)
        if args.pairs == 0:
            results["pull"] = with_earlier_classic_rows(results["pull"], earlier, measured_before)
        results["pull"].setdefault("measured", results["measured"])
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    print(table)
    when = dates(push_measured, results.get("pull", {}).get("measured"))
    heading = f"# The publishing path, measured\n\n`./invokew bench --publishing`, {when}, {variant.name}."
    REPORT.write_text(f"{heading}\n\n{table}\n")
    print(f"\n(results in {RESULTS.relative_to(PROJECT_ROOT)} and {REPORT.relative_to(PROJECT_ROOT)})")


def dates(push: str | None, pull: str | None) -> str:
    """When the rows were measured: one date, or each table's where they differ."""
    if push == pull or not (push and pull):
        return push or pull or "never"
    return f"the push rows {push}, the pull-to-ready rows {pull}"


def with_earlier_classic_rows(fresh: dict[str, Any], earlier: dict[str, Any], measured_before: str | None) -> dict[str, Any]:
    """FRESH measured only the containerd store's row: the classic store's rows and floor stay
    from EARLIER, with the engine and the date they were measured on."""
    if not earlier.get("trials") or "unavailable" in fresh:
        return fresh
    before = earlier.get("classic", {})
    classic = {
        "measured": before.get("measured", earlier.get("measured", measured_before)),
        "configuration": before.get("configuration", earlier.get("configuration")),
    }
    kept = {"trials": earlier["trials"], "floor": earlier["floor"], "classic": classic}
    if earlier.get("engine_floor"):
        kept["engine_floor"] = earlier["engine_floor"]
    return fresh | kept


def markdown(results: dict[str, Any]) -> str:
    parts = []
    if "push" in results:
        parts.append(push_table(results["push"]))
    if "pull" in results:
        parts.append(pull_ready.table(results["pull"]))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
