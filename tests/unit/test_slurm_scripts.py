"""The Slurm batch scripts torchenv writes for a real cluster, and the rehearsal's names."""

from __future__ import annotations

import re
import subprocess

import pytest

from torchenv.errors import TorchenvError
from torchenv.model import names
from torchenv.model.matrix import load_matrix
from torchenv.pipeline import slurm


@pytest.mark.parametrize(
    ("reference", "uri"),
    [
        ("ghcr.io/org/torchenv:cu117", "ghcr.io#org/torchenv:cu117"),
        ("127.0.0.1:5000/torchenv@sha256:" + "a" * 64, "127.0.0.1:5000#torchenv@sha256:" + "a" * 64),
        ("localhost/torchenv:cu117", "localhost#torchenv:cu117"),
        # Docker Hub's: no registry part to separate.
        ("org/torchenv:cu117", "org/torchenv:cu117"),
        ("torchenv:cu117", "torchenv:cu117"),
    ],
)
def test_enroot_separates_the_registry_with_a_hash(reference: str, uri: str) -> None:
    assert slurm.enroot_uri(reference) == uri


def test_every_placeholder_is_filled() -> None:
    matrix = load_matrix()
    for kind in slurm.TEMPLATES:
        for name in ("cpu", "cu121"):
            text = slurm.render(kind, matrix.get(name), "ghcr.io/org/torchenv:x", 3, 4)
            assert not re.search(r"@[A-Z_]+@", text)
            assert "#SBATCH --nodes=3" in text and ("--gpus-per-node=4" in text) == (name != "cpu")
    assert "--nv " in slurm.render("apptainer", matrix.get("cu121"), "r", 1) and "--nv" not in slurm.render(
        "apptainer", matrix.get("cpu"), "r", 1
    )


def test_a_template_or_count_that_does_not_exist_is_one_line() -> None:
    variant = load_matrix().get("cpu")
    with pytest.raises(TorchenvError, match=r"no Slurm template 'singularity'; choose one of apptainer, pyxis"):
        slurm.render("singularity", variant, "r", 2)
    with pytest.raises(TorchenvError, match=r"--nodes 0 --gpus-per-node 1: a job needs at least one node"):
        slurm.render("pyxis", variant, "r", 0)


def test_a_reference_from_a_hostile_tag_stays_one_shell_word() -> None:
    text = slurm.render("apptainer", load_matrix().get("cpu"), "x; rm -rf /", 2)
    assert "image='x; rm -rf /'" in text


def test_sbatch_parsable_gives_the_job_id() -> None:
    assert slurm.job_id(subprocess.CompletedProcess([], 0, "42\n", "")) == "42"
    assert slurm.job_id(subprocess.CompletedProcess([], 1, "43;torchenv\n", "")) == "43"
    with pytest.raises(TorchenvError, match=r"sbatch gave no job id: sbatch: error: Batch job submission failed"):
        slurm.job_id(subprocess.CompletedProcess([], 1, "", "sbatch: error: Batch job submission failed: Invalid account\n"))


def test_the_slurm_dockerfile_has_the_stage_torchenv_names() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (slurm.SLURM_DIR / "Dockerfile").read_text(), re.M)
    assert stages == [names.SLURM_STAGE]


def test_the_node_names_are_those_of_slurm_conf_and_compose() -> None:
    conf = (slurm.SLURM_DIR / "slurm.conf").read_text()
    compose = (slurm.SLURM_DIR / "compose.yaml").read_text()
    assert "NodeName=slurm-node[1-2] " in conf and f"SlurmctldHost={slurm.CONTROLLER}\n" in conf
    for host in (slurm.CONTROLLER, *slurm.NODES):
        assert f"  {host}:\n" in compose and f"hostname: {host}\n" in compose
