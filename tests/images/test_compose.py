"""`docker compose run` as a user runs it: the demo's files land in ./out, owned by the
invoking user, with the hardened, offline service settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torchenv.model.matrix import Variant

from ..helpers import compose_run


def test_compose_train_writes_metrics_owned_by_the_user(image: str, variant: Variant, tmp_path: Path) -> None:
    result = compose_run(tmp_path, "train", "train", "--epochs", "3", TORCHENV_IMAGE=image)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics_file = tmp_path / "out" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["variant"] == variant.name and metrics["final_loss"] < metrics["first_loss"]
    for path in (metrics_file, tmp_path / "out" / "checkpoint.pt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_compose_verify_runs_offline_and_read_only(image: str, variant: Variant, tmp_path: Path) -> None:
    probe = "verify --no-compile && ! touch /probe 2>/dev/null && ! getent hosts example.com"
    result = compose_run(tmp_path, "verify", "sh", "-c", probe, TORCHENV_IMAGE=image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
