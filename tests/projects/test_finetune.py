"""The worked example as a user builds and runs it: `invoke build --project
examples/finetune` on the default variant. Each claim is checked from outside the code
that makes it: layers and labels from the engine, packages from the lock file read here,
the pipeline's metrics re-read on the host from the files it wrote."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.locking import sbom
from torchenv.locking.locks import read_lock
from torchenv.locking.project_locks import project_lock_path
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.names import Label
from torchenv.model.project import Project, load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.build import image_tag
from torchenv.pipeline.project_build import PYTEST, build_project

from ..helpers import compose_run

# The empty layer BuildKit writes for a step that changes nothing (WORKDIR, the venv check).
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
PINNED = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", re.M)

# Containers get GPUs only when the GPU job hands them in.
GPUS = os.environ.get("TORCHENV_TEST_GPUS") or None

# The example on the default variant, the README's project path.
pytestmark = pytest.mark.needs_variants("cu117")


def pins_in(path: Path) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PINNED.findall(path.read_text())}


def layers(reference: str) -> tuple[str, ...]:
    return engine.get().require_image(reference).layers


def test_the_project_image_is_its_variant_plus_a_packages_layer_and_a_code_layer(
    example_image: str, example: Project, variant: Variant, settings: Settings
) -> None:
    ours, base = layers(example_image), layers(image_tag(variant, settings))
    assert ours[: len(base)] == base, "the variant's layers are shared as they are"
    added = [layer for layer in ours[len(base) :] if layer != EMPTY_LAYER]
    assert len(added) == 2, ours[len(base) :]
    facts = engine.get().require_image(example_image)
    lock = project_lock_path(example, variant)
    assert facts.labels[Label.PROJECT] == "finetune"
    assert facts.labels[Label.PROJECT_LOCK_SHA256] == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert facts.labels[Label.VARIANT] == variant.name and facts.labels[Label.TORCH] == variant.torch
    tags = engine.get().tags_of(facts.id, f"{settings.image_name}-finetune")
    assert {variant.name, f"{variant.name}-lock-{hashlib.sha256(lock.read_bytes()).hexdigest()[:12]}"} <= set(tags)


def test_the_image_holds_the_variants_lock_and_the_projects_exactly(example_image: str, example: Project, variant: Variant) -> None:
    variant_lock = read_lock(variant)
    assert variant_lock is not None
    wanted = {**pins_in(variant_lock.path), **pins_in(project_lock_path(example, variant))}
    listing = engine.get().output_of(example_image, ["python", "-m", "pip", "list", "--format", "json"], RunOptions())
    everything = {entry["name"].lower().replace("_", "-"): entry["version"] for entry in json.loads(listing)}
    # pip is the venv's own (python -m venv seeds it), in no lock.
    installed = {name: version for name, version in everything.items() if name != "pip"}
    assert installed == wanted
    assert installed["torch"] == variant.torch and installed["numpy"].startswith("1.")
    # Its SBOM lists them all, the project's included, and names the project.
    document = json.loads(engine.get().output_of(example_image, ["cat", sbom.IMAGE_PATH], RunOptions()))
    assert sbom.packages_in(document, "pypi") == everything
    identity = {entry["name"]: entry["value"] for entry in document["metadata"]["component"]["properties"]}
    assert identity["torchenv:project"] == "finetune"


def test_the_pipeline_passes_its_own_tests_in_the_container_and_its_metrics_hold(
    example_image: str, example: Project, settings: Settings, tmp_path: Path
) -> None:
    """The project's tests (pytest inside the image, hardened, offline), then each step's
    claim once more from the JSON files they left in the mounted folder."""
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    options = RunOptions(
        volumes={str(out): ("/out", "rw")}, environment={"FINETUNE_OUT": "/out/finetune"}, shm_size=settings.container_shm_size()
    )
    result = engine.get().run(example_image, [*PYTEST, f"/opt/project/{example.tests}"], options)
    assert result.exit_code == 0, result.output[-3000:]
    assert re.search(r"\b6 passed\b", result.output), result.output[-1000:]
    step = {name: json.loads((out / "finetune" / f"{name}.json").read_text()) for name in ("train", "evaluate", "finetune", "deploy")}
    assert step["train"]["final_loss"] < 0.5 * step["train"]["initial_loss"]
    assert step["evaluate"]["trained_perplexity"] < 0.25 * step["evaluate"]["untrained_perplexity"]
    assert step["finetune"]["task_perplexity_after"] < 0.5 * step["finetune"]["task_perplexity_before"]
    assert step["finetune"]["frozen_tensors_changed"] == [] and step["finetune"]["adapter_tensors_changed"] > 0
    assert step["deploy"]["max_abs_difference"] < 1e-4
    assert (out / "finetune" / "model.torchscript.pt").stat().st_size == step["deploy"]["file_bytes"]
    assert (out / "finetune" / "adapter" / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.gpu
def test_the_pipeline_runs_on_the_gpu(example_image: str, example: Project, settings: Settings) -> None:
    """`python -m finetune --device cuda`, through the project's own tests, on the GPUs
    TORCHENV_TEST_GPUS hands in (marker gpu: collected only with them)."""
    options = RunOptions(gpus=GPUS, environment={"FINETUNE_DEVICE": "cuda"}, shm_size=settings.container_shm_size())
    result = engine.get().run(example_image, [*PYTEST, f"/opt/project/{example.tests}"], options)
    assert result.exit_code == 0, result.output[-3000:]
    assert re.search(r"\b6 passed\b", result.output), result.output[-1000:]


def test_an_edit_of_the_code_rebuilds_only_the_code_layer(
    example_image: str, example: Project, variant: Variant, matrix: Matrix, settings: Settings, tmp_path: Path
) -> None:
    """A copy of the example under another name: its packages layer is the example's own
    (the same lock, from the build cache); an edit of its code changes the last layer only."""
    copy = Path(shutil.copytree(example.root, tmp_path / "edited"))
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('name = "finetune"', 'name = "finetune-edited"'))
    edited = load_project(copy)
    first = build_project(edited, variant, matrix, settings)
    try:
        before = layers(first)
        steps = copy / "src" / "finetune" / "steps.py"
        steps.write_text(steps.read_text() + "\n# an edit\n")
        after = layers(build_project(edited, variant, matrix, settings))
        assert before[:-1] == after[:-1] == layers(example_image)[:-1], "everything below the code is reused"
        assert before[-1] != after[-1]
    finally:
        repository = f"{settings.image_name}-finetune-edited"
        for image in engine.get().image_ids({"reference": repository}):
            for tag in engine.get().tags_of(image, repository):
                engine.get().remove_image(f"{repository}:{tag}")


def test_compose_runs_the_project_by_its_name_offline_and_as_the_user(example_image: str, tmp_path: Path) -> None:
    checked = compose_run(tmp_path, "verify", "verify", "--no-compile", TORCHENV_PROJECT="finetune")
    assert checked.returncode == 0 and "all checks passed" in checked.stdout, checked.stdout + checked.stderr
    ran = compose_run(
        tmp_path, "shell", "sh", "-c", "python -m finetune --quick --out /out/ft && ! getent hosts example.com", TORCHENV_PROJECT="finetune"
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    written = tmp_path / "out" / "ft" / "deploy.json"
    assert json.loads(written.read_text())["format"] == "torchscript"
    assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())
