"""torch.distributed for `train`: the launcher (`train --nproc N`, torchrun underneath) and
what each rank needs: its place, the process group, sums across ranks, and the check that
every rank ends with the same weights."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from torchenv_app.cluster import TORCHRUN_FLAG_VARIABLES, LaunchPlan

# How many restarts the launcher gave torchrun, for the ranks' own advice on a failure.
MAX_RESTARTS_ENV = "TORCHENV_MAX_RESTARTS"

# Options of `train` that only the launcher reads; the ranks get the rest.
LAUNCH_OPTIONS = {
    "--nproc": 1,
    "--nnodes": 1,
    "--node-rank": 1,
    "--master": 1,
    "--rdzv": 1,
    "--max-restarts": 1,
    "--rdzv-timeout": 1,
    "--ddp": 0,
}


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int
    node_rank: int
    nnodes: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_node_main(self) -> bool:
        return self.local_rank == 0


def current() -> Ranks | None:
    """This process's place when torchrun started it, else None (a single process, or the
    launcher). TORCHELASTIC_RUN_ID, not LOCAL_RANK: enroot's PyTorch hook exports RANK and
    LOCAL_RANK into every Slurm task, before any torchrun ran."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world_size = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    return Ranks(rank, world_size, int(os.environ["LOCAL_RANK"]), rank // local_world, world_size // local_world)


def rank_argv(argv: list[str]) -> list[str]:
    """ARGV without the launcher's own options."""
    kept, skip = [], 0
    for item in argv:
        if skip:
            skip -= 1
            continue
        name = item.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = 0 if "=" in item else LAUNCH_OPTIONS[name]
            continue
        kept.append(item)
    return kept


def torchrun_options(plan: LaunchPlan, loopback_port: int) -> list[str]:
    """torchrun's options for PLAN, in the spellings torch 2.0's torchrun accepts."""
    options = ["--nproc_per_node", str(plan.nproc), "--nnodes", str(plan.nnodes), "--max_restarts", str(plan.max_restarts)]
    if plan.nnodes == 1 and plan.rdzv == "static":
        # Loopback and a free port, not --standalone: that hands the workers this host's
        # name, which a container without a network cannot resolve (they would wait forever).
        return [*options, "--master_addr", "127.0.0.1", "--master_port", str(loopback_port)]
    if plan.rdzv == "static":
        return [*options, "--node_rank", str(plan.node_rank), "--master_addr", plan.master_host, "--master_port", str(plan.master_port)]
    # c10d: node 0 hosts the store. Said outright: torch guesses it from host names, and a
    # Service's short name (job-0.svc) or a second NIC makes node 0 guess no.
    conf = f"is_host={int(plan.node_rank == 0)},join_timeout={plan.timeout},read_timeout={plan.timeout}"
    return [*options, "--rdzv_backend", "c10d", "--rdzv_endpoint", plan.master, "--rdzv_id", plan.rdzv_id, "--rdzv_conf", conf]


class RendezvousFailed(Exception):
    """The nodes did not meet; the message says why in one line."""


class ProcessLost(Exception):
    """A process of this node died of a signal (killed, out of memory) with no restart left."""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def wait_for_master(plan: LaunchPlan) -> None:
    """Node 0's name, resolved before torchrun starts: a Service's record or a late node's
    DNS entry can appear after this node starts, and torch gives up on it sooner."""
    deadline = time.monotonic() + plan.timeout
    while True:
        try:
            socket.getaddrinfo(plan.master_host, plan.master_port, socket.AF_INET, socket.SOCK_STREAM)
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise RendezvousFailed(
                    f"the master {plan.master_host} did not resolve within {plan.timeout} s ({error.strerror or error}): "
                    "start node 0, and check its name with verify --distributed"
                ) from None
        time.sleep(1)


def launch(argv: list[str], plan: LaunchPlan) -> int:
    """Runs `train` as PLAN's processes on this node through torchrun; returns the first
    failed rank's own exit code, so each failure keeps its meaning. Raises RendezvousFailed,
    and ProcessLost for a process killed by a signal."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import get_args_parser, run

    # torch threads per process: the node's cores shared out, not oversubscribed.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.nproc)))
    os.environ[MAX_RESTARTS_ENV] = str(plan.max_restarts)
    # PLAN decided them (cluster.TORCHRUN_FLAG_VARIABLES); left set, torchrun's parser would read them.
    for name in TORCHRUN_FLAG_VARIABLES:
        os.environ.pop(name, None)
    if plan.nnodes > 1:
        wait_for_master(plan)
    options = torchrun_options(plan, free_port())
    try:
        run(get_args_parser().parse_args([*options, "--module", "torchenv_app.train", *rank_argv(argv)]))
    except ChildFailedError as error:
        codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        killed = {rank: code for rank, code in codes.items() if code < 0}
        if killed:
            rank, code = min(killed.items())
            raise ProcessLost(
                f"rank {rank} on this node was killed by {signal_name(-code)} and torchrun had no restart left "
                f"(--max-restarts {plan.max_restarts}): rerun on every node, with --max-restarts {plan.max_restarts + 1} "
                "or more to resume from the last epoch's checkpoint by itself"
            ) from None
        return min(codes.values())
    except RendezvousError as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RendezvousFailed(
            f"the nodes did not meet at {plan.master} within {plan.timeout} s ({type(error).__name__}: {first}): "
            "start train on every node, and check node 0's port with verify --distributed"
        ) from None
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init(ranks: Ranks, device: str) -> Any:
    """Joins the process group: NCCL between GPUs, gloo on CPUs. Returns the rank's device.
    A group set up before by the process's launcher (Ray Train's TorchTrainer) is taken as
    it is."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(ranks.local_rank)
            return torch.device("cuda", ranks.local_rank)
        return torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl")
        return torch.device("cuda", ranks.local_rank)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend())


def sum_across(values: list[float], device: Any) -> list[float]:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def parameter_checksum(model: Any) -> str:
    """sha256 of every parameter's bytes, in order: equal only for bit-identical weights."""
    import torch

    digest = hashlib.sha256()
    for parameter in model.parameters():
        raw = parameter.detach().cpu().contiguous().view(-1).view(torch.uint8)
        try:
            digest.update(raw.numpy().tobytes())
        except (ImportError, RuntimeError):  # a torch without numpy beside it (outside an image)
            digest.update(bytes(raw.tolist()))
    return digest.hexdigest()


def gather(checksum: str, world_size: int) -> list[str]:
    import torch.distributed as dist

    everyone: list[Any] = [None] * world_size
    dist.all_gather_object(everyone, checksum)
    return [str(item) for item in everyone]


def finish() -> None:
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
