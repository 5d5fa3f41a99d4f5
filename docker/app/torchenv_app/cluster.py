"""Where `train` runs when no flag says: the node count, this node's rank and the master's
address, read from what each cluster engine injects into the container. Every engine ends
in torchrun; they differ only in these variables (their sources are named below and in
docs/clusters.md). No torch here: the unit tests feed each engine's environment."""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_PORT = 29500
# training-operator's default for PyTorchJob when the master's container names no port.
PYTORCHJOB_PORT = 23456
RENDEZVOUS = ("c10d", "static")
# Seconds a node waits for the others and for node 0's store: torch's static rendezvous
# default. c10d's own (60 s to reach the store) fails a job whose node 0 is scheduled late.
RDZV_TIMEOUT = 900
# torchrun's flags, which its parser takes from PET_<NAME> when it is built: torch 2.0's
# argparse_util.check_env reads bool(int(value)), so the empty value that a PyTorchJob's
# elasticPolicy.standalone sets (training-operator's elastic env generator) breaks the
# parser. train chooses these itself (its module, run by Python, on its rendezvous).
TORCHRUN_FLAG_VARIABLES = ("PET_STANDALONE", "PET_NO_PYTHON", "PET_RUN_PATH", "PET_MODULE")


class ClusterError(ValueError):
    """An engine's environment that cannot describe a job; the message says what to set."""


@dataclass(frozen=True)
class Placement:
    """What the engine says; None where it says nothing (a flag or the default decides)."""

    engine: str = ""
    nnodes: int | None = None
    node_rank: int | None = None
    master: str | None = None  # HOST:PORT of node 0
    nproc: str | None = None  # torchrun's spelling: "4", "auto", "gpu", "cpu"
    rdzv: str | None = None
    rdzv_id: str | None = None
    # PET_STANDALONE is set (elasticPolicy.standalone): every node its own rendezvous.
    standalone: bool = False


@dataclass(frozen=True)
class LaunchPlan:
    """The settings one node's torchrun gets."""

    nproc: int
    nnodes: int
    node_rank: int
    master: str
    rdzv: str  # "c10d" or "static"
    rdzv_id: str
    max_restarts: int
    engine: str
    timeout: int = RDZV_TIMEOUT

    @property
    def master_host(self) -> str:
        return self.master.rpartition(":")[0]

    @property
    def master_port(self) -> int:
        return int(self.master.rpartition(":")[2])


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list, as src/common/hostlist.c reads it: "n[01-03,7],gpu-a"
    is n01 n02 n03 n7 gpu-a; a range is zero-padded to its low bound's width; with several
    bracket groups the leftmost varies slowest; text after a bracket is kept ("n[1-2]-ib")."""
    hosts: list[str] = []
    for item in _split_top_level(text):
        hosts.extend(_expand_one(item))
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text.strip():
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ClusterError(f"the Slurm host list {text!r} has an unmatched ']'")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise ClusterError(f"the Slurm host list {text!r} has an unmatched '['")
    items.append(current)
    return [item for item in items if item]


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if not match:
        return [item]
    prefix, suffix = item[: match.start()], item[match.end() :]
    names = []
    for part in match[1].split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ClusterError(f"the Slurm host list range {part!r} in {item!r} is not NUMBER or NUMBER-NUMBER")
        width = len(low)
        for number in range(int(low), int(high or low) + 1):
            names.append(f"{prefix}{number:0{width}d}")
    return [name + rest for name in names for rest in _expand_one(suffix)]


def detect(env: Mapping[str, str], fqdn: Callable[[], str] = socket.getfqdn) -> Placement:
    """The engine this process runs under, read from ENV (FQDN gives this host's full name,
    for an Indexed Job's master); an empty Placement when none is recognised."""
    if "SLURM_JOB_ID" in env:
        return _slurm(env)
    if "PET_NNODES" in env:
        return _torchrun_variables(env)
    if "MASTER_ADDR" in env and "WORLD_SIZE" in env and "RANK" in env:
        return _pytorchjob(env)
    if "JOB_COMPLETION_INDEX" in env:
        return _indexed_job(env, fqdn())
    return Placement()


def _number(env: Mapping[str, str], name: str) -> int:
    value = env[name].strip()
    if not value.isdigit():
        raise ClusterError(f"{name}={env[name]!r} is not a whole number; the engine's environment is broken")
    return int(value)


def _slurm(env: Mapping[str, str]) -> Placement:
    """Slurm's srun (and pyxis, which runs the task inside the container). Inside a step the
    SLURM_STEP_* variables are the step's own; SLURM_JOB_* describe the whole allocation."""
    job = env["SLURM_JOB_ID"]
    if "SLURM_STEP_NUM_NODES" not in env:
        nodes = _number(env, "SLURM_JOB_NUM_NODES") if "SLURM_JOB_NUM_NODES" in env else 1
        if nodes > 1:
            raise ClusterError(
                f"train runs in the batch script of Slurm job {job} ({nodes} nodes), on its first node only: "
                "start it with `srun --ntasks-per-node=1 train ...` so that each node runs one"
            )
        return Placement("slurm", nnodes=1, node_rank=0, rdzv_id=job)
    nnodes = _number(env, "SLURM_STEP_NUM_NODES")
    tasks = _number(env, "SLURM_STEP_NUM_TASKS") if "SLURM_STEP_NUM_TASKS" in env else nnodes
    if tasks != nnodes:
        raise ClusterError(
            f"srun started {tasks} tasks on {nnodes} node(s); train runs one torchrun per node, which starts the processes: "
            "use `srun --ntasks-per-node=1 train --nproc N ...`"
        )
    hosts = expand_hostlist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
    if len(hosts) != nnodes:
        raise ClusterError(f"SLURM_STEP_NODELIST names {len(hosts)} host(s) for a step of {nnodes} node(s)")
    # This node's place in the step's list, where Slurm names it; SLURM_NODEID otherwise.
    name = env.get("SLURMD_NODENAME", "")
    node_rank = hosts.index(name) if name in hosts else _number(env, "SLURM_NODEID")
    # The port enroot's PyTorch hook exports (pyxis); else the hook's own rule, so that two
    # jobs sharing a first node do not collide on one port.
    port = env.get("MASTER_PORT") or str(61000 + int(job) % 4536 if job.isdigit() else DEFAULT_PORT)
    return Placement("slurm", nnodes=nnodes, node_rank=node_rank, master=f"{hosts[0]}:{port}", rdzv_id=job)


def _torchrun_variables(env: Mapping[str, str]) -> Placement:
    """torchrun's own PET_* variables: Kubeflow Trainer v2 (TrainJob) sets PET_NNODES,
    PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT; PyTorchJob sets
    them too, and PET_RDZV_* with an elasticPolicy."""
    nnodes_text = env["PET_NNODES"]
    low, _, high = nnodes_text.partition(":")
    if not low.isdigit() or (high and high != low):
        raise ClusterError(
            f"PET_NNODES={nnodes_text!r}: train runs a fixed number of nodes; set the job's node count (minNodes = maxNodes)"
        )
    engine = "pytorchjob" if "MASTER_ADDR" in env else "trainjob"
    host = env.get("PET_MASTER_ADDR") or env.get("MASTER_ADDR")
    port = env.get("PET_MASTER_PORT") or env.get("MASTER_PORT") or str(DEFAULT_PORT)
    endpoint = env.get("PET_RDZV_ENDPOINT")
    master = endpoint if endpoint and ":" in endpoint else (f"{host}:{port}" if host else None)
    rank_name = "PET_NODE_RANK" if "PET_NODE_RANK" in env else "RANK"
    node_rank = _number(env, rank_name) if rank_name in env else None
    backend = env.get("PET_RDZV_BACKEND")
    return Placement(
        engine,
        nnodes=int(low),
        node_rank=node_rank,
        master=master,
        nproc=env.get("PET_NPROC_PER_NODE"),
        rdzv=backend if backend in RENDEZVOUS else None,
        rdzv_id=env.get("PET_RDZV_ID") or (host.split(".")[0].removesuffix("-master-0") if host else None),
        standalone="PET_STANDALONE" in env and env["PET_STANDALONE"].strip() != "0",
    )


def _pytorchjob(env: Mapping[str, str]) -> Placement:
    """Kubeflow's PyTorchJob without nprocPerNode: one process per pod, RANK is the pod's
    (the master 0, worker i is i + 1) and WORLD_SIZE the number of pods."""
    host = env["MASTER_ADDR"]
    return Placement(
        "pytorchjob",
        nnodes=_number(env, "WORLD_SIZE"),
        node_rank=_number(env, "RANK"),
        master=f"{host}:{env.get('MASTER_PORT') or PYTORCHJOB_PORT}",
        nproc="1",
        rdzv_id=host.split(".")[0].removesuffix("-master-0"),
    )


def _indexed_job(env: Mapping[str, str], fqdn: str) -> Placement:
    """A Kubernetes Indexed Job: the pod's index is its node rank; the pod count is not in
    its environment, so the manifest passes it (TORCHENV_NNODES). The master is pod 0, by
    the name its headless Service gives it: <job>-0.<subdomain>, unless TORCHENV_MASTER says."""
    index = _number(env, "JOB_COMPLETION_INDEX")
    if "TORCHENV_NNODES" not in env:
        raise ClusterError(
            "an Indexed Job's pods are not told how many there are: set TORCHENV_NNODES to the Job's completions "
            "(the manifests from `invoke manifests` do)"
        )
    master = env.get("TORCHENV_MASTER")
    name, _, domain = fqdn.partition(".")
    job = name.removesuffix(f"-{index}")
    if not master:
        if job == name or not domain:
            raise ClusterError(
                f"cannot name pod 0 from this pod's name {fqdn!r}: give the Job's pod template a subdomain "
                "(its headless Service) or set TORCHENV_MASTER=HOST:PORT"
            )
        master = f"{job}-0.{domain}:{DEFAULT_PORT}"
    return Placement("indexed-job", nnodes=_number(env, "TORCHENV_NNODES"), node_rank=index, master=master, rdzv_id=job)


def plan(
    placement: Placement,
    *,
    nproc: int | None,
    nnodes: int | None,
    node_rank: int | None,
    master: str | None,
    rdzv: str | None,
    max_restarts: int,
    default_master: str,
    auto_nproc: Callable[[], int],
    timeout: int = RDZV_TIMEOUT,
) -> LaunchPlan:
    """Flags first, then the engine, then the defaults; the engine's "auto" process count is
    AUTO_NPROC (the visible GPUs, else the cores, as torchrun counts them)."""
    nnodes = nnodes or placement.nnodes or 1
    if placement.standalone and nnodes > 1:
        raise ClusterError(
            f"PET_STANDALONE is set (a PyTorchJob's elasticPolicy.standalone) for a job of {nnodes} nodes: standalone gives "
            "each node a rendezvous of its own, so they never meet; remove standalone from the job's elasticPolicy"
        )
    node_rank = node_rank if node_rank is not None else placement.node_rank or 0
    if not 0 <= node_rank < nnodes:
        raise ClusterError(f"the node rank must be between 0 and {nnodes - 1} (nodes - 1), got {node_rank}")
    master = master or placement.master or default_master
    if nnodes > 1 and not re.fullmatch(r"[^:\s]+:\d+", master):
        raise ClusterError(f"the master must be HOST:PORT, got {master!r}")
    if nproc is None:
        given = placement.nproc or "1"
        nproc = int(given) if given.isdigit() else auto_nproc()
    rdzv = rdzv or placement.rdzv or ("c10d" if nnodes > 1 else "static")
    return LaunchPlan(
        nproc=max(1, nproc),
        nnodes=nnodes,
        node_rank=node_rank,
        master=master,
        rdzv=rdzv,
        rdzv_id=placement.rdzv_id or "torchenv",
        max_restarts=max_restarts,
        engine=placement.engine,
        timeout=timeout,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The launch flags `train` and `verify --distributed` share."""
    group = parser.add_argument_group(
        "across processes and nodes", "unset, they come from the cluster engine's environment (Slurm, Kubernetes; docs/clusters.md)"
    )
    group.add_argument("--nproc", type=_positive, help="processes on this node (DistributedDataParallel: gloo/NCCL); default 1")
    group.add_argument("--nnodes", type=_positive, help="nodes taking part, each running train")
    group.add_argument("--node-rank", type=int, help="this node's rank, 0 .. nnodes-1 (with --rdzv c10d the order of arrival decides)")
    group.add_argument("--master", help="HOST:PORT of node 0, which hosts the rendezvous (default: $TORCHENV_MASTER, localhost:29500)")
    group.add_argument("--rdzv", choices=RENDEZVOUS, help="torchrun's rendezvous: c10d (default for several nodes) or static")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def plan_from(
    args: argparse.Namespace,
    env: Mapping[str, str],
    auto_nproc: Callable[[], int],
    max_restarts: int = 0,
    fqdn: Callable[[], str] = socket.getfqdn,
    timeout: int = RDZV_TIMEOUT,
) -> LaunchPlan:
    """add_arguments' flags, filled in from the engine's environment ENV, then the defaults."""
    return plan(
        detect(env, fqdn),
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master=args.master,
        rdzv=args.rdzv,
        max_restarts=max_restarts,
        default_master=env.get("TORCHENV_MASTER") or "localhost:29500",
        auto_nproc=auto_nproc,
        timeout=timeout,
    )
