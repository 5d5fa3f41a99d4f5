"""Rendezvous faults on compose's two DDP nodes: the nodes started in reverse order with
node 0's name appearing late, a node 0 that never comes (one line, exit 10), and a process
or a whole node lost mid-run: with a restart the job resumes from its last checkpoint and
ends with the weights of a run that lost nothing; without one, one line on each node."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from torchenv import engine

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


EXIT_PROCESS_LOST = 11
# Six epochs, torchrun allowed RESTARTS restarts; node 1 fails after the third (the image's
# own fault injection, once per ./out: a marker there says it happened).
EPOCHS = 6


def lossy_nodes(folder: Path, restarts: int, node: bool) -> Path:
    """A compose override: both nodes train EPOCHS epochs with --max-restarts RESTARTS, and
    node 1's processes (with NODE, its torchrun too) are killed after epoch 3."""
    command = ["--nproc", "1", "--nnodes", "2", "--master", "ddp-node0:29500", "--epochs", str(EPOCHS), "--max-restarts", str(restarts)]
    fault = {"TORCHENV_TRAIN_FAIL_AFTER_EPOCH": "3", "TORCHENV_TRAIN_FAIL_NODE": "1" if node else "0"}
    override = folder / "lossy.yaml"
    override.write_text(
        json.dumps(
            {
                "services": {
                    "ddp-node0": {"command": ["train", *command, "--node-rank", "0"]},
                    "train-ddp": {"command": ["train", *command, "--node-rank", "1"], "environment": fault},
                }
            }
        )
    )
    return override


def lossy_pair(image: str, folder: Path, restarts: int) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Node 1 (its process lost after epoch 3) run to its end beside node 0: (node 1's run, node 0's logs)."""
    env, overrides = {"TORCHENV_IMAGE": image}, [lossy_nodes(folder, restarts, node=False)]
    try:
        node1 = compose_run(folder, "train-ddp", overrides=overrides, **env)
        node0 = compose_command(folder, "logs", "--no-color", "--no-log-prefix", "ddp-node0", overrides=overrides, **env)
    finally:
        compose_command(folder, "--profile", "ddp", "down", "--volumes", overrides=overrides, **env)
    return node1, node0


def uninterrupted_checksum(image: str) -> str:
    """The same training in one container, two processes, nothing lost."""
    output = engine.get().output_of(image, ["train", "--device", "cpu", "--nproc", "2", "--epochs", str(EPOCHS), "--out", "/tmp/ref"])
    return CHECKSUM_LINE.search(output)[4]


def test_a_lost_process_restarts_both_nodes_from_the_last_checkpoint(image: str, tmp_path: Path) -> None:
    node1, node0 = lossy_pair(image, tmp_path, restarts=1)
    output = node1.stdout + node1.stderr + node0.stdout + node0.stderr
    assert node1.returncode == 0, output
    assert (tmp_path / "out" / ".torchenv-fault-injected").is_file(), "the fault never happened"
    assert re.search(r"train: resumed \(restart 1\) from /out/checkpoint\.pt after epoch 3$", output, re.M), output
    reports = {match[1]: match[4] for match in CHECKSUM_LINE.finditer(output)}
    assert set(reports) == {"0", "1"} and set(reports.values()) == {uninterrupted_checksum(image)}, output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["epochs"]] == list(range(1, EPOCHS + 1))


def test_a_lost_node_rejoins_and_the_job_resumes(image: str, tmp_path: Path) -> None:
    """Node 1's torchrun is killed with its process, as when its machine is lost; a new
    node 1 (the scheduler's replacement) joins node 0, which waited in the rendezvous."""
    env, overrides = {"TORCHENV_IMAGE": image}, [lossy_nodes(tmp_path, restarts=1, node=True)]
    try:
        lost = compose_run(tmp_path, "train-ddp", overrides=overrides, **env)
        assert lost.returncode == 137, lost.stdout + lost.stderr  # SIGKILL
        replacement = compose_run(tmp_path, "--no-deps", "train-ddp", overrides=overrides, **env)
        node0 = compose_command(tmp_path, "logs", "--no-color", "--no-log-prefix", "ddp-node0", overrides=overrides, **env)
    finally:
        compose_command(tmp_path, "--profile", "ddp", "down", "--volumes", overrides=overrides, **env)
    output = replacement.stdout + replacement.stderr + node0.stdout + node0.stderr
    assert replacement.returncode == 0, output
    assert re.search(r"train: resumed \(restart 1\) from /out/checkpoint\.pt after epoch 3$", output, re.M), output
    reports = {match[1]: match[4] for match in CHECKSUM_LINE.finditer(output)}
    assert set(reports) == {"0", "1"} and set(reports.values()) == {uninterrupted_checksum(image)}, output


def test_a_lost_process_without_restarts_fails_in_one_line_on_both_nodes(image: str, tmp_path: Path) -> None:
    node1, node0 = lossy_pair(image, tmp_path, restarts=0)
    assert node1.returncode == EXIT_PROCESS_LOST, node1.stdout + node1.stderr
    # c10d ranks follow the order of arrival: node 1's process may be rank 0 or 1.
    assert re.fullmatch(
        r"train: error: rank [01] on this node was killed by SIGKILL and torchrun had no restart left \(--max-restarts 0\): "
        r"rerun on every node, with --max-restarts 1 or more to resume from the last epoch's checkpoint by itself",
        node1.stderr.strip().splitlines()[-1],
    ), node1.stderr
    survivor = re.findall(r"train: error: .*", node0.stdout + node0.stderr)  # compose's logs start lines with escapes
    assert len(survivor) == 1, node0.stdout + node0.stderr
    assert re.fullmatch(
        r"train: error: rank \d of 2 lost another process of the job \(.+\); rerun on every node, with --max-restarts 1 or more .*",
        survivor[0],
    ), survivor
