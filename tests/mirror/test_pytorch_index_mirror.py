"""The PyTorch-index path, walked against a real index: a mirror on 127.0.0.1 serving real
wheels. A variant with no lock is locked from it, built, verified and run; a mirror that
is down, or one whose wheel has other bytes than the lock, fails in one line and leaves
nothing tagged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.locking.locks import lock_path
from torchenv.locking.sizes import locked_hashes
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant

from . import index
from .conftest import SOURCE_LOCK

pytestmark = pytest.mark.needs_variants("cu117")


def tags_of_repository(name: str) -> set[str]:
    return {reference.split("@")[0] for reference in engine.get().references(name)}


@pytest.fixture(scope="module")
def mirrored_build(variant: Variant, matrix: Matrix, mirror_settings: Settings, mirror: index.Served) -> Iterator[str]:
    """`invoke build` of the variant, which has no lock yet: it locks it from the mirror
    first. Its image goes when the module is done (gigabytes the rest of a run needs)."""
    assert not lock_path(variant, mirror_settings.lock_dir).exists()
    tag = build_variant(variant, matrix, mirror_settings)
    yield tag
    for reference in tags_of_repository(mirror_settings.image_name):
        engine.get().remove_image(reference, force=True)


def test_a_variant_without_a_lock_is_locked_from_the_mirror_and_built_from_it(
    mirrored_build: str, variant: Variant, mirror_settings: Settings, mirrored_wheels: list[Path], mirror: index.Served
) -> None:
    lock = lock_path(variant, mirror_settings.lock_dir)
    text = lock.read_text()
    assert "# wheel-source: pytorch index (cu117)" in text
    assert f"# pytorch-index: {mirror.url}/cu117 (torch, torchaudio, torchvision)" in text
    hashes = locked_hashes(text)
    # The lock names the mirror's own files: their hashes, computed here from the bytes served.
    for wheel in mirrored_wheels:
        project = index.project_of(wheel)
        assert re.search(rf"^{project}=={re.escape(wheel.name.split('-')[1])} ", text, re.M), project
        assert index.sha256_of(wheel) in hashes[project]
    # Their dependencies come from PyPI: the NVIDIA libraries are the very files cu117's lock has.
    assert hashes["nvidia-cudnn-cu11"] == locked_hashes(SOURCE_LOCK.read_text())["nvidia-cudnn-cu11"]
    assert any(path.endswith(".whl") and "/files/torch-2.0.1+cu117-" in path for path in mirror.requests)

    facts = engine.get().image(mirrored_build)
    assert facts is not None
    assert facts.labels[Label.LOCK_SHA256] == hashlib.sha256(lock.read_bytes()).hexdigest()
    # Only the mirror has wheels labelled +cu117: the image's torch came from it.
    probe = (
        "import importlib.metadata as m, json, torch; "
        "print(json.dumps([m.version(p) for p in ('torch', 'torchvision', 'torchaudio')] + [torch.version.cuda]))"
    )
    found = json.loads(engine.get().output_of(mirrored_build, ["python", "-c", probe]))
    assert found == ["2.0.1+cu117", "0.15.2+cu117", "2.0.2+cu117", "11.7"]


def test_the_mirrored_image_trains(mirrored_build: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    result = engine.get().run(mirrored_build, ["train", "--epochs", "2"], RunOptions(volumes={str(out): ("/out", "rw")}), timeout=600)
    assert result.exit_code == 0, result.output[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "mirrored" and metrics["final_loss"] < metrics["first_loss"]
    assert (out / "checkpoint.pt").stat().st_size > 0


def test_a_mirror_that_is_down_fails_in_one_line_and_tags_nothing(variant: Variant, matrix: Matrix, mirror_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/whl"
    settings = dataclasses.replace(mirror_settings, pytorch_index=closed, image_name="torchenv-mirror-down")
    with pytest.raises(TorchenvError) as caught:
        build_variant(variant, matrix, settings)
    message = str(caught.value)
    assert f"could not be reached at {closed}/cu117/torch/" in message and "\n" not in message
    assert tags_of_repository("torchenv-mirror-down") == set()


def test_a_wheel_with_other_bytes_than_the_lock_is_refused_naming_it(
    mirrored_build: str, variant: Variant, matrix: Matrix, mirror_settings: Settings, tampered_mirror: index.Served, tmp_path: Path
) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    shutil.copy(lock_path(variant, mirror_settings.lock_dir), locks)
    settings = dataclasses.replace(
        mirror_settings, pytorch_index=tampered_mirror.url, lock_dir=locks, image_name="torchenv-mirror-tampered"
    )
    with pytest.raises(TorchenvError) as caught:
        build_variant(variant, matrix, settings)
    message = str(caught.value)
    assert re.search(r"torchaudio==2\.0\.2\+cu117 does not match its hash in the lock", message), message
    assert "nothing was tagged" in message and "\n" not in message
    assert tags_of_repository("torchenv-mirror-tampered") == set()
