"""Performance, measured side by side in one run and reported as ratios against each
figure's natural baseline (issue 7's targets):

- size: torchenv's image vs a naive single-stage image of the same lock (bench/naive),
  uncompressed and compressed as pushed to a local registry (gzip; zstd through skopeo),
  and vs the installed size of the locked wheels; a per-layer breakdown;
- cold build vs its floor: downloading the locked wheels plus installing them from local
  files with uv (--cold; downloads every wheel twice, so it is opt-in);
- rebuild after editing the demo code, and a no-op rebuild;
- `docker compose run verify`; `import torch` in the container vs on the host, and the
  demo's training throughput in the container vs on the host, with the same wheels.

Run from the project root:  ./invokew bench [--variants cu117,cu117-py39,cu121] [--cold]
Results go to bench/results/latest.json; `invoke report` turns them into a table and chart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from torchenv import PROJECT_ROOT, engine
from torchenv.commands import performance
from torchenv.commands.performance import BENCH_RESULTS as RESULTS
from torchenv.engine import BuildRequest
from torchenv.locking.locks import Lock
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.records import BenchResults, VariantFigures
from torchenv.model.settings import Settings
from torchenv.pipeline import compose, scratch_registry, zstd_push
from torchenv.pipeline.base import make_base, source_date_epoch
from torchenv.pipeline.build import build_variant, image_tag, lock_for, requirements_context

WORK = PROJECT_ROOT / "bench" / ".work"
APP_FILE = PROJECT_ROOT / "docker" / "app" / "torchenv_app" / "__init__.py"
NAIVE_DOCKERFILE = PROJECT_ROOT / "bench" / "naive" / "Dockerfile"
NAIVE_PACKAGES = ("ca-certificates", "python3", "python3-venv")
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
IMPORT_TORCH = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
# BuildKit's description of the cache mount where torchenv's builds keep uv's downloads.
UV_CACHE_MOUNT = "cached mount /tmp from exec /bin/sh -c sh /srv/install.sh"
TRAIN_ARGS = ["--epochs", "6", "--samples", "32768", "--device", "cpu"]

console = Console(stderr=True)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def quiet(action: Callable[[], object]) -> None:
    """Runs ACTION with its stdout/stderr (BuildKit's stream included) sent to a log."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "bench.log", "a") as log:
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            action()
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def run(*command: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


# ---- sizes ---------------------------------------------------------------------------


def naive_image(variant: Variant, settings: Settings, lock: Lock | None) -> str:
    """bench/naive built for VARIANT on a Debian base with Python only."""
    base = f"torchenv-bench-naive:base-{source_date_epoch()}"
    if engine.get().image_id(base) is None:
        make_base("bookworm", settings, base, packages=NAIVE_PACKAGES)
    tag = f"torchenv-bench-naive:{variant.name}"
    ca_bundle = settings.ca_bundle_path()
    request = BuildRequest(
        context=NAIVE_DOCKERFILE.parent,
        dockerfile=NAIVE_DOCKERFILE,
        platform=variant.platform,
        build_args={"BASE_IMAGE": base},
        contexts={"requirements": requirements_context(variant, settings, lock)},
        secrets={"ca-bundle": ca_bundle} if ca_bundle else {},
        tags=(tag,),
    )
    if engine.get().build(request, echo=False).image_id is None:
        raise RuntimeError(f"the naive image for {variant.name} did not build (see {WORK / 'bench.log'})")
    return tag


def image_size(reference: str) -> int:
    return engine.get().require_image(reference).size


def venv_size(image: str) -> int:
    return int(engine.get().output_of(image, ["du", "-sb", "/opt/venv"]).split()[0])


@contextlib.contextmanager
def local_registry() -> Iterator[str]:
    with scratch_registry.serving(WORK, "the bench") as registry:
        yield registry.address


def pushed_layers(registry: str, repository: str, tag: str) -> list[int]:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=30) as response:
        return [layer["size"] for layer in json.load(response)["layers"]]


def push_gzip(image: str, registry: str, repository: str, tag: str) -> list[int]:
    alias = f"{registry}/{repository}:{tag}"
    engine.get().tag(image, alias)
    try:
        engine.get().push(alias)
    finally:
        engine.get().remove_image(alias)
    return pushed_layers(registry, repository, tag)


def push_zstd(image: str, registry: str, repository: str, tag: str) -> list[int] | None:
    """The same image pushed as `invoke push` sends it by default (zstd at the default level,
    through skopeo); None without skopeo."""
    if shutil.which("skopeo") is None:
        return None
    level = Settings().zstd_level
    zstd_push.push(engine.get().image_id(image) or image, [f"{registry}/{repository}:{tag}"], registry, WORK, level)
    return pushed_layers(registry, repository, tag)


def layer_steps(image: str) -> list[tuple[str, int]]:
    """(what made it, uncompressed bytes) per layer, bottom first."""
    steps = []
    for created, size in reversed(engine.get().history(image)):
        if size == 0 and not any(word in created for word in ("ADD", "COPY", "RUN", "WORKDIR")):
            continue  # metadata only (ENV, LABEL, ...): no layer
        steps.append((describe(created), size))
    return steps


def describe(created_by: str) -> str:
    if "rootfs.tar" in created_by or "ADD" in created_by:
        return "Debian base (mmdebstrap)"
    if "adapt.sh" in created_by:
        return "base adapted (user, checks)"
    if 'install.sh "NVIDIA libraries"' in created_by:
        return "venv: NVIDIA libraries"
    if 'install.sh "torch"' in created_by:
        return "venv: torch and the rest"
    if 'install.sh "project packages"' in created_by:
        return "project: its packages"
    if "/opt/project" in created_by:
        return "project: its code"
    if "check_venv" in created_by:
        return "venv check (writes nothing)"
    if "docker/app" in created_by or "/opt/torchenv" in created_by:
        return "app (verify, train)"
    if created_by.startswith("WORKDIR"):
        return "home directory (WORKDIR)"
    return created_by.split("/bin/sh -c ")[-1][:40]


def sizes(variant: Variant, settings: Settings, lock: Lock | None) -> dict[str, Any]:
    """In an order that keeps the disk's peak low: the zstd archive goes before the naive
    image comes, and the naive image and the registry go when measured."""
    ours = image_tag(variant, settings)
    with local_registry() as registry:
        ours_zstd = push_zstd(ours, registry, "torchenv-zstd", variant.name)
        ours_gzip = push_gzip(ours, registry, "torchenv", variant.name)
        naive = naive_image(variant, settings, lock)
        try:
            naive_gzip = push_gzip(naive, registry, "naive", variant.name)
            naive_size = image_size(naive)
            # The naive image holds the locked wheels as installed, untrimmed.
            wheels_installed = venv_size(naive)
        finally:
            engine.get().remove_image(naive)
    steps = layer_steps(ours)
    if len(steps) != len(ours_gzip):  # history and layers disagree: name them by position
        steps = [(f"layer {index}", 0) for index in range(len(ours_gzip))]
    layers = [
        {"step": step, "uncompressed": size, "gzip": gzip, "zstd": ours_zstd[index] if ours_zstd else None}
        for index, ((step, size), gzip) in enumerate(zip(steps, ours_gzip, strict=False))
    ]
    return {
        "image": image_size(ours),
        "naive_image": naive_size,
        "wheels_installed": wheels_installed,
        "gzip": sum(ours_gzip),
        "naive_gzip": sum(naive_gzip),
        "zstd": sum(ours_zstd) if ours_zstd else None,
        "layers": layers,
    }


# ---- build times ---------------------------------------------------------------------


def rebuilds(variant: Variant, matrix: Matrix, settings: Settings) -> dict[str, float]:
    build = lambda: quiet(lambda: build_variant(variant, matrix, settings))  # noqa: E731
    build()
    no_op = timed(build)
    original = APP_FILE.read_text()
    try:
        APP_FILE.write_text(original + f"# bench edit {time.time()}\n")
        edited = timed(build)
    finally:
        APP_FILE.write_text(original)
    build()
    return {"no_op_rebuild": no_op, "demo_edit_rebuild": edited}


def python_of_version(variant: Variant) -> str | None:
    """A Python of the variant's version on this host (the host side needs the same wheels), or None."""
    if "{}.{}".format(*sys.version_info[:2]) == variant.python:
        return sys.executable
    candidate = f"python{variant.python}"
    # A pyenv shim of a version that is not installed is on PATH but does not run.
    if shutil.which(candidate) and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
        return candidate
    return None


def host_venv(variant: Variant, lock: Lock, settings: Settings) -> tuple[Path, dict[str, float]]:
    """The floor of a build: the locked wheels downloaded (pip) and installed from those
    files with uv into a fresh venv; the venv is also the host side of the comparisons."""
    place = WORK / variant.build_name
    wheels, venv = place / "wheels", place / "venv"
    shutil.rmtree(place, ignore_errors=True)
    wheels.mkdir(parents=True)
    env = {**os.environ, **({"PIP_CERT": str(settings.ca_bundle_path())} if settings.ca_bundle_path() else {})}
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--dest", str(wheels), "-r", str(lock.path)]
    download = timed(lambda: run(*pip, env=env))
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    python = python_of_version(variant)
    assert python is not None, f"no Python {variant.python} here"  # main() checked
    # Seeded like the image's venv (pip, setuptools): torch 2.1 falls back to setuptools'
    # pkg_resources when the lock has no `packaging`.
    run(python, "-m", "venv", str(venv))
    install_command = [uv, "pip", "install", "--quiet", "--offline", "--no-deps", "--no-index", "--find-links", str(wheels)]
    install_command += ["--python", str(venv / "bin" / "python"), "--compile-bytecode", "-r", str(lock.path)]
    install = timed(lambda: run(*install_command))
    shutil.rmtree(wheels)
    return venv, {"floor_download": download, "floor_install": install}


def cold_build(variant: Variant, matrix: Matrix, settings: Settings) -> float:
    """With no downloaded wheel at hand and every step run again (--no-cache); the base
    image stays, as the floor does not make one either."""
    docker = engine.get()
    for record in docker.build_cache_ids(UV_CACHE_MOUNT):
        docker.prune_build_cache(record)
    if docker.build_cache_ids(UV_CACHE_MOUNT):
        raise RuntimeError("the wheel cache is still there (in use?); a cold build cannot be measured")
    return timed(lambda: quiet(lambda: build_variant(variant, matrix, settings, no_cache=True)))


# ---- start and run times -------------------------------------------------------------


def compose_verify(variant: Variant) -> float:
    def verify() -> None:
        result = compose.compose(PROJECT_ROOT, "run", "--rm", "verify", TORCHENV_VARIANT=variant.local_name)
        if result.returncode != 0:
            raise RuntimeError(f"docker compose run verify failed: {result.stderr.strip()[-300:]}")

    return min(timed(verify) for _ in range(3))


def container_python(image: str, *args: str) -> str:
    return engine.get().output_of(image, ["python", *args])


def host_python(venv: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "docker" / "app"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [str(venv / "bin" / "python"), *args]
    return subprocess.run(command, check=check, capture_output=True, text=True, env=env).stdout


def side_by_side(container: Callable[[], float], host: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Medians of ROUNDS alternating runs, so that drift hits both sides alike."""
    inside, outside = [], []
    for _ in range(rounds):
        inside.append(container())
        outside.append(host())
    return statistics.median(inside), statistics.median(outside)


def throughput(output: str) -> float:
    """Mean samples/s over the epochs after the first (which includes warm-up)."""
    epochs = json.loads(output)["epochs"][1:]
    return statistics.mean(epoch["samples_per_second"] for epoch in epochs)


def run_times(variant: Variant, settings: Settings, venv: Path) -> dict[str, float]:
    image = image_tag(variant, settings)
    imports = side_by_side(
        lambda: float(container_python(image, "-c", IMPORT_TORCH)), lambda: float(host_python(venv, "-c", IMPORT_TORCH)), rounds=5
    )
    train = ["-c", "import sys, runpy; sys.argv = ['train', *sys.argv[1:]]; runpy.run_module('torchenv_app.train', run_name='__main__')"]
    show = "cat {out}/metrics.json"

    def in_container() -> float:
        # Throughput only: train's own loss criterion (exit 3) does not matter here.
        script = f"train {' '.join(TRAIN_ARGS)} --out /tmp/bench >/dev/null; {show.format(out='/tmp/bench')}"
        return throughput(engine.get().output_of(image, ["sh", "-c", script]))

    def on_host() -> float:
        with tempfile.TemporaryDirectory(dir=WORK) as out:
            host_python(venv, *train, *TRAIN_ARGS, "--out", out, check=False)
            return throughput(Path(out, "metrics.json").read_text())

    samples = side_by_side(in_container, on_host, rounds=3)
    return {
        "compose_verify": compose_verify(variant),
        "import_torch_container": imports[0],
        "import_torch_host": imports[1],
        "train_samples_per_s_container": samples[0],
        "train_samples_per_s_host": samples[1],
    }


# ---- the table -----------------------------------------------------------------------
# The figures and their targets are torchenv/commands/performance.py's, shared with the docs.

ratios = performance.rows


def markdown(results: BenchResults) -> str:
    lines = ["| variant | metric | measured | ratio / figure | target |", "| --- | --- | --- | --- | --- |"]
    for name, figures in results.variants.items():
        lines += ["| " + " | ".join(row) + " |" for row in ratios(name, figures)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", help=f"comma-separated (default: {performance.BENCH_VARIANTS})")
    parser.add_argument("--cold", action="store_true", help="also measure a cold build against its floor (downloads every wheel twice)")
    args = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    compose.prepare()
    WORK.mkdir(parents=True, exist_ok=True)
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # A run for some variants keeps the others' figures.
    earlier = performance.load_results().variants if RESULTS.exists() else {}
    results = BenchResults(measured, dict(earlier))
    names = [name.strip() for name in (args.variants or performance.BENCH_VARIANTS).split(",") if name.strip()]
    for name in list(names):
        if python_of_version(matrix.get(name)) is None:
            python = matrix.get(name).python
            why = (
                f"{name} needs Python {python} on this host for its host-side figures (the floor, import and training "
                f"on the host, with the same wheels); install python{python} (pyenv, a distribution package)"
            )
            if args.variants:
                sys.exit(f"bench: error: {why}, or leave the variant out of --variants")
            print(f"bench: leaving {name} out: {why}", file=sys.stderr)
            names.remove(name)
    steps = ["build", "rebuilds", "floor"] + (["cold build"] if args.cold else []) + ["sizes", "run times"]
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("bench", total=len(names) * len(steps))
        for name in names:
            variant = matrix.get(name)
            lock = lock_for(variant, settings)
            assert lock is not None, f"{name} needs a lock"
            progress.update(task, description=f"{name}: build")
            quiet(lambda: build_variant(variant, matrix, settings))  # noqa: B023
            progress.advance(task)
            progress.update(task, description=f"{name}: no-op and demo-edit rebuilds")
            times: dict[str, float] = rebuilds(variant, matrix, settings)
            progress.advance(task)
            progress.update(task, description=f"{name}: floor (download + uv install)")
            venv, floor = host_venv(variant, lock, settings)
            times |= floor
            progress.advance(task)
            if args.cold:
                progress.update(task, description=f"{name}: cold build")
                times["cold_build"] = cold_build(variant, matrix, settings)
                progress.advance(task)
            progress.update(task, description=f"{name}: sizes (naive image, pushes)")
            measured_sizes = sizes(variant, settings, lock)
            progress.advance(task)
            progress.update(task, description=f"{name}: verify, import torch, training throughput")
            times |= run_times(variant, settings, venv)
            progress.advance(task)
            results.variants[name] = VariantFigures(measured, measured_sizes, times)
            shutil.rmtree(venv.parent, ignore_errors=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results.to_json(), indent=2) + "\n")  # after each variant: a crash keeps what was measured
    print(markdown(results))
    print(f"\n(results in {RESULTS.relative_to(PROJECT_ROOT)}; `invoke report` makes the table and chart)")


if __name__ == "__main__":
    main()
