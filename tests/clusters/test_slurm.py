"""A real Slurm cluster here: slurmctld and two slurmd nodes as containers of the
torchenv-slurm image; `sbatch --wait` of the shipped job script trains the demo on both,
and the result is the model the compose DDP run trains. The pyxis and Apptainer templates
are rendered and checked with shellcheck (neither runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline import slurm

from ..helpers import CHECKSUM_LINE, COMPARE


@pytest.fixture(scope="module")
def slurm_image(image: str, variant: Variant, settings: Settings) -> str:
    return slurm.build_image(variant, settings)


@pytest.fixture(scope="module")
def cluster(slurm_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[slurm.Cluster]:
    running = slurm.Cluster(tmp_path_factory.mktemp("slurm"), slurm_image)
    try:
        running.up()
        yield running
    finally:
        running.down()


def test_sbatch_on_two_nodes_trains_the_model_compose_ddp_trains(cluster: slurm.Cluster, image: str, reference: Path) -> None:
    submitted = cluster.sbatch(slurm.TRAIN_SCRIPT)
    job = slurm.job_id(submitted)
    output = cluster.job_output(job)
    assert submitted.returncode == 0, output + submitted.stderr
    # Each node found its rank, the node count and the master in Slurm's environment alone.
    for rank in (0, 1):
        assert f"train: slurm: node {rank} of 2, rendezvous c10d at slurm-node1:" in output, output
    reports = {match[1]: match for match in CHECKSUM_LINE.finditer(output)}
    assert set(reports) == {"0", "1"}, output
    assert {(report[2], report[3]) for report in reports.values()} == {("2", "2")}
    assert reports["0"][4] == reports["1"][4]
    # The checkpoint, read back with torch, against the compose run's.
    checkpoint = cluster.out / f"slurm-{job}" / "checkpoint.pt"
    assert checkpoint.is_file(), output
    options = RunOptions(volumes={str(checkpoint.parent): ("/a", "ro"), str(reference.parent): ("/b", "ro")})
    compared = json.loads(engine.get().output_of(image, ["python", "-c", COMPARE, "/a/checkpoint.pt", "/b/checkpoint.pt"], options))
    assert compared["keys_equal"] and compared["max_abs_diff"] <= 1e-5, compared


def test_a_failing_job_fails_sbatch_and_names_the_exit_code(cluster: slurm.Cluster) -> None:
    submitted = cluster.sbatch(slurm.TRAIN_SCRIPT, "--no-such-option")
    output = cluster.job_output(slurm.job_id(submitted))
    assert submitted.returncode != 0, output
    # train's usage error is exit 2. Its own last line may be missing: srun stops the step
    # at the first failed task (--kill-on-bad-exit) and can drop what that task wrote last.
    assert re.search(r"^srun: error: slurm-node[12]: task [01]: Exited with exit code 2$", output, re.M), output


@pytest.mark.parametrize("kind", sorted(slurm.TEMPLATES))
def test_the_templates_render_and_pass_shellcheck(kind: str, matrix: Matrix, settings: Settings, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed; ./invokew test installs it")
    for variant in (matrix.get("cpu"), matrix.get(matrix.default_variant)):
        script = slurm.write_script(kind, variant, f"ghcr.io/example/torchenv:{variant.name}", 4, 8, tmp_path)
        checked = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
        text = script.read_text()
        assert not re.search(r"@[A-Z_]+@", text), text
        assert "#SBATCH --nodes=4" in text
        assert ("#SBATCH --gpus-per-node=8" in text) == variant.is_cuda
        if kind == "pyxis":
            assert f"--container-image='ghcr.io#example/torchenv:{variant.name}'" in text


def test_the_rehearsal_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed; ./invokew test installs it")
    for script, shell in ((slurm.SLURM_DIR / "train.sbatch", "bash"), (slurm.SLURM_DIR / "slurm-node.sh", "sh")):
        checked = subprocess.run(["shellcheck", f"--shell={shell}", "--severity=style", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
