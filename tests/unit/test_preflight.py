"""verify --distributed's decisions on a node's interfaces, names and /dev/shm, fed the
data the kernel and the resolver would give (the faults themselves run in compose:
tests/images/test_cluster_preflight.py)."""

from __future__ import annotations

import sys

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import cluster, preflight
from torchenv_app.checks import FAIL, OK, WARN

PLAN = cluster.LaunchPlan(nproc=2, nnodes=2, node_rank=1, master="node0:29500", rdzv="c10d", rdzv_id="7", max_restarts=0, engine="")
NODE = {"lo": "127.0.0.1", "eth0": "10.0.0.2"}


@pytest.mark.parametrize(
    ("spec", "matched"),
    [("eth", ["eth0", "eth1"]), ("=eth0", ["eth0"]), ("^docker,lo", ["eth0", "eth1", "ib0"]), ("ib,eth1", ["eth1", "ib0"]), ("=eth", [])],
)
def test_nccl_socket_ifname_is_read_as_nccl_reads_it(spec: str, matched: list[str]) -> None:
    assert preflight.nccl_matches(spec, ["docker0", "eth0", "eth1", "ib0", "lo"]) == matched


def test_a_name_resolving_to_loopback_first_is_the_gloo_fault() -> None:
    check = preflight.check_host_name("node1", ["127.0.1.1", "10.0.0.2"], {}, "eth0")
    assert check.status == FAIL and "GLOO_SOCKET_IFNAME=eth0" in check.detail and "127.0.1.1" in check.detail
    assert preflight.check_host_name("node1", ["10.0.0.2", "127.0.1.1"], {}, "eth0").status == OK
    assert preflight.check_host_name("node1", ["127.0.1.1"], {"GLOO_SOCKET_IFNAME": "eth0"}, "eth0").status == OK
    assert preflight.check_host_name("node1", [], {}, None).status == FAIL


@pytest.mark.parametrize(
    ("known", "route", "env", "status", "words"),
    [
        (NODE, "eth0", {}, OK, "reached through eth0"),
        ({**NODE, "docker0": "172.17.0.1"}, "docker0", {}, WARN, "NCCL skips unless told"),
        ({**NODE, "ib0": "192.168.0.2"}, "eth0", {}, WARN, "GLOO_SOCKET_IFNAME=eth0 NCCL_SOCKET_IFNAME=eth0"),
        ({**NODE, "ib0": "192.168.0.2"}, "ib0", {"GLOO_SOCKET_IFNAME": "ib0", "NCCL_SOCKET_IFNAME": "ib"}, OK, "through ib0"),
        (NODE, "eth0", {"GLOO_SOCKET_IFNAME": "eth9"}, FAIL, "names eth9, which this node lacks"),
        (NODE, "eth0", {"NCCL_SOCKET_IFNAME": "ib"}, FAIL, "NCCL_SOCKET_IFNAME=ib matches none"),
        (NODE, None, {}, FAIL, "no route to the master"),
    ],
)
def test_interfaces(known: dict[str, str], route: str | None, env: dict[str, str], status: str, words: str) -> None:
    check = preflight.check_interfaces(PLAN, "10.0.0.1", route, known, env)
    assert (check.status, words in check.detail) == (status, True), check.detail


def test_the_interface_to_pin_is_never_loopback() -> None:
    assert preflight.outward("lo", {**NODE, "docker0": "172.17.0.1"}) == "eth0"
    assert (preflight.outward("ib0", NODE), preflight.outward(None, {"lo": "127.0.0.1"})) == ("ib0", None)


def test_a_loopback_master_is_refused_for_several_nodes() -> None:
    check = preflight.check_interfaces(PLAN, "127.0.0.1", "lo", NODE, {})
    assert check.status == FAIL and "name node 0 as they see it" in check.detail


def test_shm_is_held_against_the_jobs_need() -> None:
    assert preflight.check_shm(PLAN, None, 2**31).status == OK  # 2 processes, 1 GB each
    small = preflight.check_shm(PLAN, None, 64 * 2**20)
    assert small.status == FAIL and "--shm-size 2g" in small.detail and "medium: Memory" in small.detail
    assert "--shm-size 8g" in preflight.check_shm(PLAN, preflight.parse_size("8g"), 2**31).detail


@pytest.mark.parametrize(("text", "size"), [("8g", 8 * 2**30), ("512m", 512 * 2**20), ("1.5G", 3 * 2**29), ("4096", 4096), ("2gb", 2**31)])
def test_sizes(text: str, size: int) -> None:
    assert preflight.parse_size(text) == size
