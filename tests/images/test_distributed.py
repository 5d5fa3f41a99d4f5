"""torch.distributed in the real image: `train --nproc 2` in one container, and the
compose demo with two containers as two nodes; every rank must end with the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchenv.model.matrix import Variant

from ..helpers import CHECKSUM_LINE, compose_command, compose_run
from .conftest import TrackedContainer


def test_train_two_processes_end_with_the_same_weights(container: TrackedContainer) -> None:
    # On the CPU (gloo) on purpose, with or without GPUs: a one-GPU runner has no two GPUs.
    result = container.host.run("train --device cpu --nproc 2 --epochs 4 --out /tmp/ddp")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = json.loads(container.host.file("/tmp/ddp/metrics.json").content_string)
    report = metrics["distributed"]
    assert (report["world_size"], report["nodes"], report["backend"]) == (2, 1, "gloo")
    assert report["checksums_equal"] and len(set(report["checksums"])) == 1
    assert metrics["loss_fell"]
    assert CHECKSUM_LINE.search(result.stdout)[4] == report["checksums"][0]


def test_the_image_sets_pytorch_version_for_enroots_hook(container: TrackedContainer, variant: Variant) -> None:
    # enroot's 50-slurm-pytorch.sh (pyxis) sets MASTER_ADDR/PORT only for images with it.
    assert container.host.run("printenv PYTORCH_VERSION").stdout.strip() == variant.torch
    assert container.python("import torch; print(torch.__version__)").startswith(variant.torch_release)


def test_a_pytorchjobs_standalone_flag_does_not_break_torchrun(container: TrackedContainer) -> None:
    # training-operator writes PET_STANDALONE="" for elasticPolicy.standalone, which torch
    # 2.0's own torchrun parser cannot read (int("")); train launches one node all the same.
    pod = "MASTER_ADDR=localhost MASTER_PORT=23456 WORLD_SIZE=1 RANK=0 PET_NNODES=1 PET_STANDALONE="
    result = container.host.run(f"{pod} train --device cpu --nproc 2 --epochs 4 --out /tmp/standalone")
    assert result.rc == 0, result.stdout + result.stderr
    assert json.loads(container.host.file("/tmp/standalone/metrics.json").content_string)["distributed"]["world_size"] == 2
    # Stock torchrun fails on the same variable: what train spares the user.
    stock = container.host.run("PET_STANDALONE= python -c 'from torch.distributed.run import get_args_parser; get_args_parser()'")
    assert stock.rc != 0 and "invalid literal for int()" in stock.stderr, stock.stdout + stock.stderr


def test_train_notices_ranks_that_diverge(container: TrackedContainer) -> None:
    result = container.host.run("TORCHENV_TRAIN_DIVERGE_RANK=1 train --device cpu --nproc 2 --epochs 2 --out /tmp/diverge")
    assert result.rc == 7, result.stdout + result.stderr
    assert "ranks ended with different weights" in result.stderr
    assert "DIFFER" in result.stdout


def visible_gpus(container: TrackedContainer) -> int:
    return int(container.python("import torch; print(torch.cuda.device_count())"))


@pytest.mark.gpu
@pytest.mark.cuda_only
def test_ddp_on_the_gpus_uses_nccl_one_process_each(container: TrackedContainer) -> None:
    gpus = visible_gpus(container)
    result = container.host.run(f"train --ddp --nproc {gpus} --epochs 4 --out /tmp/nccl")
    assert result.rc == 0, result.stdout + result.stderr
    report = json.loads(container.host.file("/tmp/nccl/metrics.json").content_string)["distributed"]
    assert (report["world_size"], report["backend"], report["checksums_equal"]) == (gpus, "nccl", True)
    # One process more than there are GPUs is refused before torchrun starts one.
    refused = container.host.run(f"train --nproc {gpus + 1} --epochs 1 --out /tmp/nccl-refused")
    assert refused.rc == 5, refused.stdout + refused.stderr
    assert f"use --nproc {gpus} or --device cpu (gloo)" in refused.stderr


def test_compose_two_nodes_train_one_model(image: str, variant: Variant, tmp_path: Path) -> None:
    """`docker compose run train-ddp`: node 1 in the foreground, node 0 as its dependency,
    on the project's own internal network; both report the same final checksum."""
    env = {"TORCHENV_IMAGE": image}
    try:
        node1 = compose_run(tmp_path, "train-ddp", **env)
        node0 = compose_command(tmp_path, "logs", "--no-color", "--no-log-prefix", "ddp-node0", **env)
    finally:
        compose_command(tmp_path, "--profile", "ddp", "down", "--volumes", **env)
    assert node1.returncode == 0, node1.stdout + node1.stderr
    reports = {match[1]: match for match in CHECKSUM_LINE.finditer(node1.stdout + node0.stdout)}
    assert set(reports) == {"0", "1"}, node1.stdout + node0.stdout
    assert reports["0"][2] == reports["1"][2] == "2" and reports["0"][3] == "2"
    assert reports["0"][4] == reports["1"][4]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())  # written by node 0, the global rank 0
    assert metrics["distributed"]["nodes"] == 2 and metrics["distributed"]["checksums"] == [reports["0"][4]] * 2
