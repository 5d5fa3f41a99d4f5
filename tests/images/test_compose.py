"""`docker compose run` as a user runs it: the demo's files land in ./out, owned by the
invoking user, with the hardened, offline service settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from torchenv.model.matrix import Variant
from torchenv.model.settings import Settings

from ..helpers import compose_run
from .test_runtime import BIG_BATCHES


def test_compose_train_writes_metrics_owned_by_the_user(image: str, variant: Variant, tmp_path: Path) -> None:
    result = compose_run(tmp_path, "train", "train", "--epochs", "3", TORCHENV_IMAGE=image)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics_file = tmp_path / "out" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["variant"] == variant.name and metrics["final_loss"] < metrics["first_loss"]
    for path in (metrics_file, tmp_path / "out" / "checkpoint.pt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_compose_gives_dataloader_workers_a_real_shared_memory(image: str, tmp_path: Path) -> None:
    """Batches that cannot pass through Docker's 64 MB /dev/shm (test_runtime.py's) pass
    through compose's, and verify reports its size."""
    result = compose_run(tmp_path, "train", "train", *BIG_BATCHES.split(), TORCHENV_IMAGE=image)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["workers"], metrics["loss_fell"]) == (1, True)
    checked = compose_run(tmp_path, "verify", "verify", "--json", "--no-compile", TORCHENV_IMAGE=image)
    assert json.loads(checked.stdout)["shm_bytes"] == Settings.load().container_shm_size_bytes()


def test_compose_verify_runs_offline_and_read_only(image: str, variant: Variant, tmp_path: Path) -> None:
    probe = "verify --no-compile && ! touch /probe 2>/dev/null && ! getent hosts example.com"
    result = compose_run(tmp_path, "verify", "sh", "-c", probe, TORCHENV_IMAGE=image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


@pytest.mark.gpu
@pytest.mark.cuda_only
def test_compose_gpu_services_run_on_the_gpu(image: str, variant: Variant, tmp_path: Path) -> None:
    """`docker compose --profile gpu run verify-gpu` and `train-gpu`: the NVIDIA device
    reservation reaches the container, and verify requires the GPU there."""
    checked = compose_run(tmp_path, "verify-gpu", "verify", "--json", COMPOSE_PROFILES="gpu", TORCHENV_IMAGE=image)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    statuses = {check["name"]: check["status"] for check in json.loads(checked.stdout)["checks"]}
    assert statuses["gpu"] == statuses["gpu arch"] == "ok"
    trained = compose_run(tmp_path, "train-gpu", "train", "--device", "cuda", "--epochs", "2", COMPOSE_PROFILES="gpu", TORCHENV_IMAGE=image)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["device"] == "cuda"
