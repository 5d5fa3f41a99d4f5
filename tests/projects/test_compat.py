"""Code nobody here wrote, as users bring it: small real projects on PyTorch Lightning with
torchmetrics, timm and DeepSpeed (an op it compiles with ninja on first use), each built
by `invoke build --project`'s code on a variant, locked against that variant, trained a
few steps in a container, and judged from its files: the metrics it wrote, read here, and
its saved weights evaluated in a fresh container against the untrained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import RunOptions
from torchenv.locking.locks import locked_packages, read_lock
from torchenv.locking.project_locks import read_project_lock
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.project_build import build_project

COMPAT = PROJECT_ROOT / "tests" / "projects" / "compat"
SEED = "7"


@dataclass(frozen=True)
class CompatProject:
    folder: str
    module: str
    # The distributions whose versions the lock must have put into the image.
    packages: tuple[str, ...]


PROJECTS = [
    CompatProject("lightning", "compat_lightning", ("pytorch-lightning", "lightning-utilities", "torchmetrics")),
    CompatProject("timm", "compat_timm", ("timm", "huggingface-hub", "safetensors")),
    CompatProject("deepspeed", "compat_deepspeed", ("deepspeed",)),
]

VERSIONS = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"


@pytest.mark.parametrize("compat", PROJECTS, ids=[project.folder for project in PROJECTS])
def test_a_third_party_project_builds_and_its_training_lowers_the_loss(
    compat_variant: Variant, compat: CompatProject, matrix: Matrix, settings: Settings, tmp_path: Path
) -> None:
    project = load_project(COMPAT / compat.folder)
    image = build_project(project, compat_variant, matrix, settings)  # verify and the import smoke, before the tag

    # What is in the image is what the two locks say, read from the files here.
    variant_lock, project_lock = read_lock(compat_variant), read_project_lock(project, compat_variant)
    assert variant_lock is not None and project_lock is not None
    wanted = {**locked_packages(variant_lock), **project_lock.packages}
    names = [*compat.packages, "torch", "numpy", "setuptools"]
    found = json.loads(engine.get().output_of(image, ["python", "-c", VERSIONS, *names], RunOptions()))
    assert found == {name: wanted[name] for name in names}

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    options = RunOptions(volumes={str(out): ("/out", "rw")}, shm_size=settings.container_shm_size(),
                         environment={"TORCH_EXTENSIONS_DIR": "/out/extensions"})  # fmt: skip
    trained = engine.get().run(image, ["python", "-m", compat.module, "--out", "/out/run", "--seed", SEED], options, timeout=900)
    assert trained.exit_code == 0, trained.output[-3000:]
    losses = json.loads((out / "run" / "metrics.json").read_text())["losses"]
    assert len(losses) >= 4 and losses[-1] < 0.8 * losses[0], losses

    evaluate = ["python", "-m", f"{compat.module}.evaluate", "/out/run", SEED]
    judged = engine.get().run(image, evaluate, RunOptions(volumes={str(out): ("/out", "ro")}), timeout=600)
    assert judged.exit_code == 0, judged.output[-3000:]
    result = json.loads(judged.stdout.strip().splitlines()[-1])
    assert result["trained"] < 0.7 * result["untrained"], result

    if compat.folder == "deepspeed":
        # The op was compiled here, on first use, by ninja through torch's cpp_extension.
        built = out / "extensions" / "cpu_adam"
        assert (built / "build.ninja").is_file() and (built / "cpu_adam.so").is_file(), sorted(p.name for p in built.iterdir())
