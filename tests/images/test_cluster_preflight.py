"""`verify --distributed` on compose's two DDP nodes: it passes on a sound pair, and each
fault a cluster user meets, injected here, fails its own check with one line that says what
to change (docs/clusters.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ..helpers import CHECKSUM_LINE, compose_command, compose_run

# The launcher is the image's Python code on torchrun: one image per torch release shows it.
pytestmark = pytest.mark.one_per_torch


NODE1 = ["--nnodes", "2", "--node-rank", "1", "--no-compile", "--wait", "3"]


def failures(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """verify's FAIL lines, by check name."""
    return {match[1].strip(): match[2] for match in re.finditer(r"^  FAIL  (.{14}) (.*)$", result.stdout, re.M)}


def test_both_nodes_pass_the_preflight_together(image: str, tmp_path: Path) -> None:
    env = {"TORCHENV_IMAGE": image, "TORCHENV_DDP_RUN": "verify"}
    try:
        node1 = compose_run(tmp_path, "train-ddp", **env)
        node0 = compose_command(tmp_path, "logs", "--no-color", "--no-log-prefix", "ddp-node0", **env)
    finally:
        compose_command(tmp_path, "--profile", "ddp", "down", "--volumes", **env)
    assert node1.returncode == 0, node1.stdout + node1.stderr
    assert "OK    rendezvous     reached node 0 at ddp-node0:29500" in node1.stdout
    assert re.search(r"OK    rendezvous     port 29500: the 1 other node\(s\) reached it", node0.stdout), node0.stdout
    assert "all checks passed" in node0.stdout


@pytest.mark.parametrize(
    ("env", "args", "check", "advice"),
    [
        (
            {"TORCHENV_SHM_SIZE": "64m"},
            ["--master", "ddp-node1:29500"],
            "shm",
            "/dev/shm is 64 MB, this job needs 1.0 GB: run the container with --shm-size 1g",
        ),
        ({}, ["--master", "ddp-nowhere:29500"], "master name", "ddp-nowhere did not resolve within 3 s"),
        (
            {},
            ["--master", "ddp-node1:29500"],
            "rendezvous",
            "ddp-node1:29500 did not answer in time (Connection refused): start verify --distributed on node 0 too",
        ),
        (
            {"GLOO_SOCKET_IFNAME": "eth9"},
            ["--master", "ddp-node1:29500"],
            "interfaces",
            "GLOO_SOCKET_IFNAME names eth9, which this node lacks",
        ),
        (
            {"NCCL_SOCKET_IFNAME": "ib"},
            ["--master", "ddp-node1:29500"],
            "interfaces",
            "NCCL_SOCKET_IFNAME=ib matches none of this node's interfaces",
        ),
    ],
    ids=["shm-64m", "master-unresolvable", "port-unreachable", "gloo-ifname", "nccl-ifname"],
)
def test_a_fault_fails_its_check_in_one_line(
    image: str, tmp_path: Path, env: dict[str, str], args: list[str], check: str, advice: str
) -> None:
    settings = {"TORCHENV_IMAGE": image, "TORCHENV_SHM_SIZE": "2g", **env}
    passed = [option for name, value in env.items() if not name.startswith("TORCHENV_") for option in ("-e", f"{name}={value}")]
    command = ["--no-deps", *passed]
    result = compose_run(tmp_path, *command, "train-ddp", "verify", *NODE1, *args, **settings)
    assert result.returncode == 1, result.stdout + result.stderr
    failed = failures(result)
    assert check in failed and advice in failed[check], result.stdout
    assert f"FAILED: {', '.join(failed)}" in result.stdout


def test_node_0s_port_in_use_is_named(image: str, tmp_path: Path) -> None:
    listener = "import socket, time; server = socket.create_server(('', 29500)); time.sleep(60)"
    command = f'python -c "{listener}" & sleep 2; verify --nnodes 2 --node-rank 0 --master ddp-node0:29500 --no-compile --wait 3'
    result = compose_run(tmp_path, "--no-deps", "ddp-node0", "sh", "-c", command, TORCHENV_IMAGE=image)
    assert result.returncode == 1, result.stdout + result.stderr
    assert failures(result) == {"rendezvous": "port 29500 is in use on node 0 (another job?): give --master another port"}


def test_a_host_name_on_loopback_is_caught_and_the_advice_makes_training_work(image: str, tmp_path: Path) -> None:
    """Debian's /etc/hosts maps the host's own name to 127.0.1.1; gloo then hands that
    address to the other node, which gets "Connection refused" (measured by hand: the job
    fails on node 0 and hangs on node 1). verify names the fault; its advice fixes it."""
    loopback = tmp_path / "loopback-name.yaml"
    loopback.write_text('services:\n  train-ddp:\n    extra_hosts: ["ddp-node1:127.0.1.1"]\n')
    env = {"TORCHENV_IMAGE": image}
    caught = compose_run(tmp_path, "--no-deps", "train-ddp", "verify", *NODE1, "--master", "ddp-node1:29500", overrides=[loopback], **env)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert failures(caught)["host name"].startswith(
        "this host's name ddp-node1 resolves to 127.0.1.1 first (/etc/hosts): gloo would give the other nodes that address; "
        "set GLOO_SOCKET_IFNAME=eth0"
    ), caught.stdout
    try:
        fixed = compose_run(tmp_path, "-e", "GLOO_SOCKET_IFNAME=eth0", "train-ddp", overrides=[loopback], **env)
        node0 = compose_command(tmp_path, "logs", "--no-color", "--no-log-prefix", "ddp-node0", overrides=[loopback], **env)
    finally:
        compose_command(tmp_path, "--profile", "ddp", "down", "--volumes", overrides=[loopback], **env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr + node0.stdout
    checksums = {match[4] for match in CHECKSUM_LINE.finditer(fixed.stdout + node0.stdout)}
    assert len(checksums) == 1, fixed.stdout + node0.stdout
