"""A project that would move what its variant pins is refused in one line, before
anything is built, and nothing is tagged: resolved by the real uv against the real index."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.project_build import build_project


def project_wanting(folder: Path, name: str, requirement: str) -> Path:
    (folder / "src").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\ndependencies = ["{requirement}"]\n[tool.torchenv]\nsmoke = ["python", "-V"]\n'
    )
    return folder


@pytest.mark.parametrize(
    ("name", "requirement", "said"),
    [
        # The project itself asks for NumPy 2: refused before uv is asked.
        ("wants-numpy2", "numpy>=2", "requires numpy>=2, but {variant} pins numpy==1.26.4"),
        # A dependency needs another torch (xformers 0.0.23 is built for torch 2.1): uv finds it.
        ("wants-torch21", "xformers==0.0.23", "want torch 2.1.1 (via xformers)"),
        # Third-party code whose newer line left torch 2.0 behind: Lightning 2.4 needs torch 2.1.
        ("wants-lightning24", "pytorch-lightning>=2.4", "(via pytorch-lightning"),
    ],
)
def test_a_project_moving_a_pinned_package_is_refused_and_nothing_is_tagged(
    tmp_path: Path, name: str, requirement: str, said: str, variant: Variant, matrix: Matrix, settings: Settings
) -> None:
    project = load_project(project_wanting(tmp_path, name, requirement))
    with pytest.raises(TorchenvError) as raised:
        build_project(project, variant, matrix, settings)
    message = str(raised.value)
    assert said.format(variant=variant.name) in message and "nothing was built" in message, message
    assert "\n" not in message
    assert not engine.get().image_ids({"reference": f"{settings.image_name}-{name}"})
    assert not (tmp_path / "locks").exists(), "no lock is written for a refused project"
