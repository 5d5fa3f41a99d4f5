"""Rendezvous faults on compose's two DDP nodes: the nodes started in reverse order with
node 0's name appearing late, and a node 0 that never comes (one line, exit 10)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ..helpers import CHECKSUM_LINE, compose_command, compose_run

# The launcher is the image's Python code on torchrun: one image per torch release shows it.
pytestmark = pytest.mark.one_per_torch


EXIT_RENDEZVOUS = 10


def test_node_1_first_and_node_0_late_still_train_one_model(image: str, tmp_path: Path) -> None:
    env = {"TORCHENV_IMAGE": image}
    try:
        with ThreadPoolExecutor(1) as pool:
            node1 = pool.submit(compose_run, tmp_path, "--no-deps", "train-ddp", **env)
            time.sleep(10)  # node 1 waits for a name that does not exist yet
            assert not node1.done(), node1.result().stdout + node1.result().stderr
            started = compose_command(tmp_path, "--profile", "ddp", "up", "--detach", "ddp-node0", **env)
            assert started.returncode == 0, started.stderr
            result = node1.result(timeout=600)
        node0 = compose_command(tmp_path, "logs", "--no-color", "--no-log-prefix", "ddp-node0", **env)
    finally:
        compose_command(tmp_path, "--profile", "ddp", "down", "--volumes", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    reports = {match[1]: match[4] for match in CHECKSUM_LINE.finditer(result.stdout + node0.stdout)}
    assert set(reports) == {"0", "1"} and len(set(reports.values())) == 1, result.stdout + node0.stdout


def test_a_node_0_that_never_comes_fails_in_one_line(image: str, tmp_path: Path) -> None:
    options = ["--nnodes", "2", "--node-rank", "1", "--rdzv-timeout", "4", "--epochs", "1"]
    unnamed = compose_run(tmp_path, "--no-deps", "train-ddp", "train", *options, "--master", "ddp-node0:29500", TORCHENV_IMAGE=image)
    assert unnamed.returncode == EXIT_RENDEZVOUS, unnamed.stdout + unnamed.stderr
    assert unnamed.stderr.strip().splitlines()[-1] == (
        "train: error: the master ddp-node0 did not resolve within 4 s (Temporary failure in name resolution): "
        "start node 0, and check its name with verify --distributed"
    )
    # A name that resolves (this node's own) where nothing listens: torch's store times out.
    silent = compose_run(tmp_path, "--no-deps", "train-ddp", "train", *options, "--master", "ddp-node1:29500", TORCHENV_IMAGE=image)
    assert silent.returncode == EXIT_RENDEZVOUS, silent.stdout + silent.stderr
    last = silent.stderr.strip().splitlines()[-1]
    assert last.startswith("train: error: the nodes did not meet at ddp-node1:29500 within 4 s (RendezvousConnectionError"), last
    assert last.endswith("check node 0's port with verify --distributed")
