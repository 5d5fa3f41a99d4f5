"""The worked example on every variant built here: its lock made against that variant's,
its image checked before tagging, and its own tests (the six steps' claims) passing in a
container of it; torch and numpy are the variant's."""

from __future__ import annotations

import json
import re

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.locking.locks import locked_packages, read_lock
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.project import Project
from torchenv.model.settings import Settings
from torchenv.pipeline.project_build import PYTEST, build_project

ASK = "import json, numpy, torch, transformers, peft; print(json.dumps([torch.__version__, numpy.__version__]))"


def test_the_example_builds_and_passes_its_tests_on_the_variant(
    project_variant: Variant, example: Project, matrix: Matrix, settings: Settings
) -> None:
    image = build_project(example, project_variant, matrix, settings)
    lock = read_lock(project_variant)
    assert lock is not None
    pins = locked_packages(lock)
    torch, numpy = json.loads(engine.get().output_of(image, ["python", "-c", ASK], RunOptions()))
    assert torch.split("+")[0] == pins["torch"].split("+")[0] and numpy == pins["numpy"]
    result = engine.get().run(image, [*PYTEST, f"/opt/project/{example.tests}"], RunOptions(shm_size=settings.container_shm_size()))
    assert result.exit_code == 0, result.output[-3000:]
    assert re.search(r"\b6 passed\b", result.output), result.output[-1000:]
