"""The repository's .devcontainer/ on the default variant's image, driven by the reference
Dev Containers CLI (npm's @devcontainers/cli at the version tests/devcontainer/cli locks):
`devcontainer up`, then `exec verify` and `exec train` as the image's non-root user, with
a real /dev/shm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant

CLI_LOCK = Path(__file__).parent / "cli"
CLI_HOME = PROJECT_ROOT / "build" / "devcontainer-cli"
CONFIG = PROJECT_ROOT / ".devcontainer" / "devcontainer.json"

pytestmark = pytest.mark.needs_variants("cu117")


@pytest.fixture(scope="module")
def cli() -> Path:
    """The CLI, installed from its lock with the machine's npm (`npm ci`: exactly the locked
    version and integrity hash)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: install Node.js >= 20 with npm (Debian 13: apt-get install nodejs npm)", pytrace=False)
    CLI_HOME.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copy(CLI_LOCK / name, CLI_HOME / name)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLI_HOME, check=True, capture_output=True, timeout=300)
    return CLI_HOME / "node_modules" / ".bin" / "devcontainer"


@pytest.fixture(scope="module")
def image() -> str:
    settings = Settings.load()
    matrix = load_matrix(settings.matrix)
    return build_variant(matrix.get("cu117"), matrix, settings)


@pytest.fixture(scope="module")
def devcontainer(cli: Path, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """`devcontainer up` for a workspace of its own; yields the arguments that name it for
    `exec`. The container and the image the CLI made for the user's UID go afterwards."""
    workspace = tmp_path_factory.mktemp("workspace")
    label = f"io.torchenv.test.devcontainer={uuid.uuid4().hex[:8]}"
    naming = ["--workspace-folder", str(workspace), "--config", str(CONFIG), "--id-label", label]
    environment = {"TORCHENV_DEVCONTAINER_IMAGE": image, "TORCHENV_SHM_SIZE": "2g"}
    up = run(cli, ["up", *naming], environment)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        outcome = json.loads(up.stdout.strip().splitlines()[-1])
        assert outcome["outcome"] == "success" and outcome["remoteUser"] == "torchenv", outcome
        # postStartCommand: verify ran as the container started.
        assert "all checks passed" in up.stdout + up.stderr
        yield [str(cli), "exec", *naming]
    finally:
        client = engine.get().client
        for container in client.containers.list(all=True, filters={"label": label}):
            made = container.image.tags
            container.remove(force=True)
            for tag in made:
                if tag.startswith("vsc-"):
                    client.images.remove(tag, force=True)


def run(cli: Path, arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cli), *arguments], capture_output=True, text=True, env={**os.environ, **environment}, timeout=600)


def exec_in(devcontainer: list[str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*devcontainer, *command], capture_output=True, text=True, timeout=600)


def test_verify_passes_in_the_dev_container_as_the_non_root_user_with_a_real_shm(devcontainer: list[str]) -> None:
    checked = exec_in(devcontainer, "verify", "--json", "--no-compile")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["shm_bytes"] == 2 * 1024**3
    who = exec_in(devcontainer, "id", "-un")
    assert who.stdout.strip() == "torchenv"


def test_train_runs_in_the_dev_container_with_dataloader_workers(devcontainer: list[str]) -> None:
    trained = exec_in(devcontainer, "train", "--epochs", "2", "--workers", "2")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    metrics = json.loads(exec_in(devcontainer, "cat", "/out/metrics.json").stdout)
    assert metrics["workers"] == 2 and metrics["final_loss"] < metrics["first_loss"]
