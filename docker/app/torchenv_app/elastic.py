"""A job that loses a process or a node: torchrun (`--max-restarts N`) starts every rank
again, a replaced node's with them, and each resumes from the newest checkpoint of this
run that any rank can read. Also the fault torchenv's tests inject to prove it.

Only ranks started by torchrun call these; each is a collective that every rank joins."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from torchenv_app import checkpoints

# The fault injection of torchenv's own tests: after the epoch named here, once per --out
# (a marker file there says it happened), this node's processes die of SIGKILL; with
# TORCHENV_TRAIN_FAIL_NODE=1 the node's torchrun too, as when a machine is lost.
FAIL_AFTER_EPOCH = "TORCHENV_TRAIN_FAIL_AFTER_EPOCH"
FAIL_NODE = "TORCHENV_TRAIN_FAIL_NODE"
FAULT_MARKER = ".torchenv-fault-injected"

# Words of gloo and NCCL when the peer at the other end of a collective is gone.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted", "Socket Timeout")


def run_id() -> str:
    return os.environ.get("TORCHELASTIC_RUN_ID", "")


def restart_count() -> int:
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def stamp(state: dict[str, Any]) -> dict[str, Any]:
    """STATE with what tells this run's checkpoints from an older run's in the same --out."""
    return {**state, "run_id": run_id(), "saved_at": time.time()}


def own_checkpoint(torch: Any, path: Path) -> dict[str, Any] | None:
    """The checkpoint at PATH when this run wrote it (its rendezvous id), else None."""
    if not path.exists():
        return None
    try:
        # Tensors and plain data only: the shared --out may hold anybody's file.
        state = checkpoints.load(torch, path)
    except checkpoints.CheckpointError:
        return None  # written atomically, so only another program's file can be unreadable
    return state if state.get("run_id") == run_id() else None


def resume_state(torch: Any, path: Path, rank: int, world_size: int) -> dict[str, Any] | None:
    """After a restart on any node (a replaced node's own count is 0), the newest checkpoint
    of this run that any rank reads at PATH, sent from that rank to all; None in a run's
    first attempt, whose stale checkpoint of an earlier run the main rank removes."""
    import torch.distributed as dist

    # The restart counts first: a first attempt reads no checkpoint (a big model's takes
    # long to load, only to be removed).
    restarts: list[Any] = [None] * world_size
    dist.all_gather_object(restarts, restart_count())
    if max(restarts) == 0:
        if rank == 0 and path.exists():
            path.unlink()
        return None
    mine = own_checkpoint(torch, path)
    offers: list[Any] = [None] * world_size
    dist.all_gather_object(offers, (len(mine["history"]), mine["saved_at"]) if mine else None)
    held = [(offer, source) for source, offer in enumerate(offers) if offer is not None]
    if not held:
        return None  # lost before the first epoch's checkpoint: the run starts again
    _, source = max(held)
    box = [mine if rank == source else None]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def inject_fault(torch: Any, epoch: int, checkpoint: Path, is_node_main: bool, wait_s: float = 120) -> None:
    """The tests' fault (FAIL_AFTER_EPOCH), set on one node only: once the main rank's
    checkpoint of EPOCH is in the shared --out, this node's processes, and with FAIL_NODE
    its torchrun, are killed. It waits on the file, not on a collective: the other nodes
    know nothing of the fault."""
    marker = checkpoint.parent / FAULT_MARKER
    if os.environ.get(FAIL_AFTER_EPOCH) != str(epoch) or marker.exists():
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = own_checkpoint(torch, checkpoint)
        if state is not None and len(state["history"]) >= epoch:
            break
        time.sleep(0.2)
    if is_node_main:
        marker.write_text(f"killed after epoch {epoch}\n")
    if os.environ.get(FAIL_NODE) == "1":
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def peer_gone(error: BaseException) -> bool:
    """Whether ERROR is a collective's peer gone: another rank's process or node died."""
    return any(words in str(error) for words in PEER_GONE)
