"""Where the classic image store's pull-to-ready goes: the same image into an empty engine
two ways, alternating, on a second dockerd of its own per trial (bench/pull_ready.py):

- `docker load` of its `docker save` archive (uncompressed layers, read from a file on
  disk): the engine's layer registration alone, no download, no decompression;
- a pull of torchenv's zstd push from a registry on 127.0.0.1, as pull-to-ready measures it.

If the load is not faster than the pull, decompression is not what the classic store
waits for: its one-core registration of each layer (untar, digest, tar-split) is, and only
fewer bytes in the image would shorten it.

    .venv/bin/python -m bench.extraction [--variant cu117] [--rounds 3]

Writes bench/results/extraction.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pull_ready
from bench.performance import local_registry
from bench.pull_ready import extraction_seconds
from torchenv import PROJECT_ROOT, engine
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline import zstd_push
from torchenv.pipeline.build import build_variant

RESULTS = PROJECT_ROOT / "bench" / "results" / "extraction.json"


def load_trial(archive: Path, reference: str) -> dict[str, Any]:
    with pull_ready.second_engine(pull_ready.ROOT) as client:
        dropped = pull_ready.drop_page_cache()
        with pull_ready.Sampler().sampling() as sampler:
            start = time.perf_counter()
            with archive.open("rb") as stream:
                for _ in client.api.load_image(stream, quiet=True):
                    pass
            loaded = time.perf_counter() - start
            client.containers.run(reference, pull_ready.VERIFY, network_mode="none", remove=True)
            ready = time.perf_counter() - start
        return {"loaded": loaded, "ready": ready, "page_cache_dropped": dropped} | sampler.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--rounds", type=int, default=3, help="load, then pull, this many times")
    args = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    variant = matrix.get(args.variant)
    tag = build_variant(variant, matrix, settings)
    docker = engine.get()
    image_id = docker.require_image(tag).id
    rounds: list[dict[str, Any]] = []
    with local_registry() as registry, tempfile.TemporaryDirectory(prefix="extraction-", dir=pull_ready.ROOT.parent) as work:
        reference = f"{registry}/{pull_ready.REPOSITORY}:torchenv"
        zstd_push.push(image_id, [reference], registry, Path(work), settings.zstd_level)
        archive = Path(work) / "image.tar"
        with docker.saved(tag) as stream, archive.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        for number in range(args.rounds):
            print(f"bench: round {number + 1} of {args.rounds}: docker load, then the zstd pull", file=sys.stderr)
            loaded = load_trial(archive, tag)
            pulled = pull_ready.trial(reference, pull_ready.VERIFY)
            rounds.append({"load": loaded, "pull": pulled | {"extraction_s": extraction_seconds(pulled)}})
    results = {
        "variant": variant.name,
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "zstd_level": settings.zstd_level,
        "configuration": pull_ready.engine_configuration(),
        "rounds": rounds,
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results: dict[str, Any]) -> str:
    loads = [r["load"]["loaded"] for r in results["rounds"]]
    pulls = [r["pull"]["pulled"] for r in results["rounds"]]
    lines = [
        f"| {results['variant']} into an empty classic engine, {len(loads)} rounds | median s (to the image) | min-max s |",
        "| --- | --- | --- |",
        f"| `docker load` (uncompressed archive) | {statistics.median(loads):.1f} | {min(loads):.1f}-{max(loads):.1f} |",
        f"| pull, zstd {results['zstd_level']} from 127.0.0.1 | {statistics.median(pulls):.1f} | {min(pulls):.1f}-{max(pulls):.1f} |",
        f"| ratio load / pull | {statistics.median(loads) / statistics.median(pulls):.2f} | |",
        "",
        f"Engine: {pull_ready.described(results['configuration'])}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
