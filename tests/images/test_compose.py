"""`docker compose run` as a user runs it: the demo's files land in ./out, owned by the
invoking user, with the hardened, offline service settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from torchenv import PROJECT_ROOT, compose
from torchenv.matrix import Variant


def compose_run(project: Path, variant: Variant, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **compose.user_environment(), "TORCHENV_VARIANT": variant.name}
    return subprocess.run(
        ["docker", "compose", "--file", str(PROJECT_ROOT / "compose.yaml"), "--project-directory", str(project), "run", "--rm", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_compose_train_writes_metrics_owned_by_the_user(image: str, variant: Variant, tmp_path: Path) -> None:
    compose.prepare(env_file=tmp_path / ".env", out_dir=tmp_path / "out")
    result = compose_run(tmp_path, variant, "train", "train", "--epochs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics_file = tmp_path / "out" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["variant"] == variant.name and metrics["final_loss"] < metrics["first_loss"]
    for path in (metrics_file, tmp_path / "out" / "checkpoint.pt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_compose_verify_runs_offline_and_read_only(image: str, variant: Variant, tmp_path: Path) -> None:
    compose.prepare(env_file=tmp_path / ".env", out_dir=tmp_path / "out")
    result = compose_run(
        tmp_path, variant, "verify", "sh", "-c", "verify --no-compile && ! touch /probe 2>/dev/null && ! getent hosts example.com"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
