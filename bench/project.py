"""The project layer's edit loop, side by side with the naive way: the time from an edit
of the example project's code to a rebuilt image, for torchenv's project build (packages
layer kept, only the code layer rebuilt) and for bench/naive-project (the project copied
before its packages are installed, so an edit installs them all again). Alternating
trials (ABAB), medians and the ratio; the torchenv row is shown both as the BuildKit build
alone (what the naive side does) and with the checks before tagging (verify and the
project's smoke command in containers).

Run from the project root:  .venv/bin/python -m bench.project [--variant cu117] [--trials 3]
It needs the variant's image (it builds it when absent) and writes bench/results/project.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

from bench.performance import WORK, quiet, timed
from torchenv import PROJECT_ROOT, engine
from torchenv.engine import BuildRequest
from torchenv.locking.locks import read_lock
from torchenv.locking.project_locks import project_lock_path
from torchenv.model.matrix import load_matrix
from torchenv.model.project import image_repository, load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.base import debian_packages, variant_base
from torchenv.pipeline.build import build_variant, image_tag
from torchenv.pipeline.project_build import build_project, project_lock_for, project_request

EXAMPLE = PROJECT_ROOT / "examples" / "finetune"
NAIVE_DOCKERFILE = PROJECT_ROOT / "bench" / "naive-project" / "Dockerfile"
RESULTS = PROJECT_ROOT / "bench" / "results" / "project.json"
BENCH_NAME = "finetune-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cu117")
    parser.add_argument("--trials", type=int, default=3)
    options = parser.parse_args()
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    variant = matrix.get(options.variant)
    quiet(lambda: build_variant(variant, matrix, settings))
    # A copy of the example under a name of its own (its tags must not replace the
    # example's), edited between trials; the example itself stays as committed.
    copy = WORK / "project-edit"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "finetune"', f'name = "{BENCH_NAME}"'))
    project = load_project(copy)
    variant_lock = read_lock(variant, settings.lock_dir)
    assert variant_lock is not None
    lock = project_lock_for(project, variant, variant_lock, settings)
    (copy / "locks" / "requirements.txt").write_text(project_lock_path(project, variant).read_text())
    base = variant_base(variant, settings)
    packages = debian_packages(base, variant.platform)
    ca = settings.ca_bundle_path()
    naive = BuildRequest(
        context=copy,
        dockerfile=NAIVE_DOCKERFILE,
        platform=variant.platform,
        build_args={"BASE_IMAGE": image_tag(variant, settings)},
        secrets={"ca-bundle": ca} if ca else {},
        progress="plain",
    )
    code = copy / "src" / "finetune" / "steps.py"
    original = code.read_text()

    def edit() -> None:
        code.write_text(original + f"\n# bench edit {time.time()}\n")

    def ours_build() -> None:
        result = engine.get().build(project_request(project, variant, settings, base, variant_lock, lock, packages))
        assert result.image_id, "the project build failed; see bench/.work/bench.log"

    def ours_checked() -> None:
        build_project(project, variant, matrix, settings)

    def naive_build() -> None:
        result = engine.get().build(naive)
        assert result.image_id, "the naive build failed; see bench/.work/bench.log"

    # Warm both: the packages layer and pip's wheel cache are there before the first trial.
    quiet(ours_checked)
    quiet(naive_build)
    figures: dict[str, list[float]] = {"torchenv_build": [], "torchenv_build_and_checks": [], "naive_build": []}
    for trial in range(options.trials):
        order = [("torchenv_build", ours_build), ("naive_build", naive_build)]
        for name, action in order if trial % 2 == 0 else order[::-1]:
            edit()
            figures[name].append(timed(lambda action=action: quiet(action)))
        edit()
        figures["torchenv_build_and_checks"].append(timed(lambda: quiet(ours_checked)))
    code.write_text(original)
    repository = image_repository(settings.image_name, project)
    for image in engine.get().image_ids({"reference": repository}):
        for tag in engine.get().tags_of(image, repository):
            engine.get().remove_image(f"{repository}:{tag}")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    result = {
        "variant": variant.name,
        "trials": figures,
        "medians_s": medians,
        "ratio_build": medians["torchenv_build"] / medians["naive_build"],
        "ratio_build_and_checks": medians["torchenv_build_and_checks"] / medians["naive_build"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| rebuild after a code edit ({variant.name}, examples/finetune, median of {options.trials}) | seconds | vs naive |")
    print("| --- | --- | --- |")
    print(f"| naive (`COPY` then `pip install`) | {medians['naive_build']:.1f} | 1.00x |")
    print(f"| torchenv project build | {medians['torchenv_build']:.1f} | {result['ratio_build']:.2f}x |")
    checked = medians["torchenv_build_and_checks"]
    print(f"| torchenv project build + verify + smoke | {checked:.1f} | {result['ratio_build_and_checks']:.2f}x |")


if __name__ == "__main__":
    main()
