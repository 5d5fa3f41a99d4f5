"""What each TorchTrainer worker runs: the image's demo (torchenv_app.train.train) inside
the torch process group that Ray Train has already set up.

Ray Train (ray/train/torch/config.py, _TorchBackend.on_start) sets MASTER_ADDR and
MASTER_PORT (rank 0's address and a free port), RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE and NODE_RANK, and calls torch.distributed.init_process_group("gloo",
init_method="env://") on every worker before this function runs; the demo's
distributed.init() takes a group that is already there as it is. Everything else is the
demo's: the same data, the
same DistributedDataParallel model, the same all_reduce of the loss and the same final
check that every rank holds bit-identical weights; its distributed.finish() destroys the
group at the end, and Ray's shutdown then skips its own destroy (it checks is_initialized).
"""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any


def where_everyone_runs(world_size: int) -> list[dict[str, Any]]:
    """Each rank's Ray node, host and process, gathered to every rank (a gloo collective)."""
    import ray
    import torch.distributed as dist

    mine = {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}
    everyone: list[Any] = [None] * world_size
    dist.all_gather_object(everyone, mine)
    return everyone


def demo_argv(config: dict[str, Any], out: str) -> list[str]:
    # --workers 0: no DataLoader worker processes inside a Ray worker (batches are made in
    # the process; /dev/shm is left to Ray's object store).
    return [
        "--device", "cuda" if config.get("gpu") else "cpu", "--workers", "0", "--out", out,
        "--epochs", str(config["epochs"]), "--samples", str(config["samples"]), "--seed", str(config["seed"]),
    ]  # fmt: skip


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    from torchenv_app import distributed
    from torchenv_app import train as demo

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    placement = where_everyone_runs(world_size)
    ranks = distributed.Ranks(
        rank=rank,
        world_size=world_size,
        local_rank=context.get_local_rank(),
        node_rank=context.get_node_rank(),
        nnodes=len({item["node_id"] for item in placement}),
    )
    with tempfile.TemporaryDirectory(prefix="raytrain-") as out:
        args = demo.parse_args(demo_argv(config, out))
        try:
            metrics = demo.train(args, ranks)
        except demo.TrainError as error:
            # TrainError(message, exit_code) does not survive pickling back to the driver.
            raise RuntimeError(f"train (exit {error.exit_code}): {error}") from None
        report = {
            "rank": rank,
            "world_size": world_size,
            "nodes": ranks.nnodes,
            "placement": placement,
            "backend": metrics["distributed"]["backend"],
            "checksums_equal": metrics["distributed"]["checksums_equal"],
            "checksums": metrics["distributed"]["checksums"],
            "first_loss": metrics["first_loss"],
            "final_loss": metrics["final_loss"],
            "final_accuracy": metrics["final_accuracy"],
            "loss_fell": metrics["loss_fell"],
            "epochs": len(metrics["epochs"]),
            "torch": metrics["torch"],
        }
        # Rank 0 wrote checkpoint.pt and metrics.json into OUT; Ray copies that folder to
        # RunConfig.storage_path (which every node must see) before report returns. Every
        # rank calls report the same number of times: it is a barrier.
        checkpoint = ray.train.Checkpoint.from_directory(out) if rank == 0 else None
        ray.train.report(report, checkpoint=checkpoint)
