"""The default variant's image under rootless Podman 4.3 and podman-compose 1.6.0, as
docs/podman.md says to run it: `podman run` with compose.yaml's hardening, compose's
`train` and its two-node DDP demo, and what a memory limit does on this host's cgroups."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..helpers import CHECKSUM_LINE
from .conftest import Podman

pytestmark = pytest.mark.needs_variants("cu117")

# compose.yaml's x-hardened and x-torchenv blocks as podman run flags.
HARDENED = (
    "--read-only",
    "--tmpfs",
    "/tmp:exec,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges:true",
    "--init",
    "--network",
    "none",
    "--pull",
    "never",
)
# What each line of PROBE shows inside the container.
PROBE = r"""
echo "uid $(id -u):$(id -g)"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
touch /probe 2>/dev/null && echo "root writable" || echo "root read-only"
printf '#!/bin/sh\necho tmp runs code\n' >/tmp/run.sh && chmod +x /tmp/run.sh && /tmp/run.sh
echo "interfaces $(ls /sys/class/net | tr '\n' ' ')"
echo "pid 1 $(tr '\0' ' ' </proc/1/cmdline)"
echo "shm $(df -B1 --output=size /dev/shm | tail -1 | tr -d ' ')"
"""
V1_IGNORED = "Resource limits are not supported and ignored on cgroups V1 rootless systems"


def test_verify_passes_with_composes_flags(podman: Podman, podman_image: str) -> None:
    result = podman("run", "--rm", *HARDENED, "--shm-size", "3g", podman_image, "verify", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all checks passed"), result.stdout
    assert re.search(r"^\s+OK\s+shm\s+/dev/shm is 3\.0 GB$", result.stdout, re.M), result.stdout


def test_composes_hardening_holds_rootless(podman: Podman, podman_image: str) -> None:
    result = podman("run", "--rm", *HARDENED, "--user", "1000:1000", "--shm-size", "3g", podman_image, "sh", "-c", PROBE)
    assert result.returncode == 0, result.stdout + result.stderr
    facts = result.stdout.splitlines()
    assert "uid 1000:1000" in facts
    assert re.search(r"^CapEff:\s+0{16}$", result.stdout, re.M), result.stdout
    assert re.search(r"^NoNewPrivs:\s+1$", result.stdout, re.M), result.stdout
    assert "root read-only" in facts
    assert "tmp runs code" in facts
    assert "interfaces lo " in facts
    assert any(line.startswith("pid 1 /run/podman-init -- sh -c") for line in facts), result.stdout
    assert f"shm {3 * 2**30}" in facts


def test_compose_train_writes_the_users_files(podman: Podman, project: Path) -> None:
    """`run train` with the environment's TORCHENV_UID=0 over .env's user (what `invoke`
    writes there): container root is the user, so ./out is theirs; the pod that run puts
    its container in stays behind."""
    env_file = project / ".env"
    invokes = f"TORCHENV_UID={podman.user.uid}\nTORCHENV_GID={podman.user.gid}"
    env_file.write_text(env_file.read_text().replace("TORCHENV_UID=0\nTORCHENV_GID=0", invokes))
    assert f"TORCHENV_UID={podman.user.uid}\n" in env_file.read_text()
    result = podman.compose(project, "run", "--rm", "-T", "train", env={"TORCHENV_UID": "0", "TORCHENV_GID": "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train: loss fell from" in result.stdout
    for name in ("metrics.json", "checkpoint.pt"):
        written = (project / "out" / name).stat()
        assert (written.st_uid, written.st_gid) == (podman.user.uid, podman.user.gid), name
        assert written.st_size > 0, name
    metrics = json.loads((project / "out" / "metrics.json").read_text())
    assert metrics["loss_fell"] and metrics["final_loss"] < metrics["first_loss"], metrics
    assert metrics["device"] == "cpu" and len(metrics["epochs"]) == 8, metrics
    assert podman("ps", "--all", "--quiet").stdout.strip() == ""
    assert podman("pod", "ls", "--format", "{{.Name}}").stdout.split() == [f"pod_{project.name}"]


def test_compose_ddp_two_nodes_agree(podman: Podman, project: Path) -> None:
    """`--profile ddp run train-ddp`: node 0 as its dependency, both on the internal ddp
    network (netavark's DNS finds ddp-node0)."""
    try:
        node1 = podman.compose(project, "--profile", "ddp", "run", "--rm", "-T", "train-ddp", timeout=180)
        node0 = podman.compose(project, "--profile", "ddp", "logs", "--no-color", "--no-log-prefix", "ddp-node0", timeout=60)
    finally:
        down = podman.compose(project, "--profile", "ddp", "down", timeout=120)
    assert node1.returncode == 0, node1.stdout + node1.stderr
    reports = {match[1]: match for match in CHECKSUM_LINE.finditer(node1.stdout + node0.stdout)}
    assert set(reports) == {"0", "1"}, node1.stdout + node0.stdout
    assert reports["0"][2] == reports["1"][2] == "2" and reports["0"][3] == reports["1"][3] == "2"
    assert reports["0"][4] == reports["1"][4]
    metrics = json.loads((project / "out" / "metrics.json").read_text())
    assert metrics["distributed"]["nodes"] == 2 and metrics["distributed"]["checksums"] == [reports["0"][4]] * 2
    # down leaves neither containers, the pod nor the project's network behind.
    assert down.returncode == 0, down.stdout + down.stderr
    assert podman("ps", "--all", "--quiet").stdout.strip() == ""
    assert podman("pod", "ls", "--quiet").stdout.strip() == ""
    networks = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [name for name in networks if name.endswith("_ddp")], networks


def test_memory_limit_as_documented_for_this_hosts_cgroups(podman: Podman, podman_image: str) -> None:
    """cgroup v1 (this CI's hosts): rootless Podman warns and runs without the limit. v2
    (not run here yet): the limit applies where the user's cgroup has the memory controller
    delegated (a systemd login session), and the run fails without it."""
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    reported = podman("info", "--format", "{{.Host.CgroupsVersion}}")
    assert reported.stdout.strip() == ("v2" if unified else "v1"), reported.stdout + reported.stderr
    read = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    result = podman("run", "--rm", "--network", "none", "--memory", "1g", podman_image, "sh", "-c", read)
    limit = result.stdout.strip()
    if unified:
        controllers = podman("info", "--format", "{{.Host.CgroupControllers}}").stdout
        if "memory" not in controllers:
            assert result.returncode != 0, f"--memory ran without the memory controller ({controllers}): " + result.stdout + result.stderr
            return
        assert result.returncode == 0 and limit == str(2**30), result.stdout + result.stderr
        assert V1_IGNORED not in result.stderr
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert V1_IGNORED in result.stderr, result.stderr
    assert limit.isdigit() and int(limit) > 2**40, limit
