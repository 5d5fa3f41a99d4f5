"""`train`: a seeded demo (classifier, cross-entropy, Adam) whose loss must fall.

Writes metrics.json and checkpoint.pt to the output directory and exits non-zero when
something is wrong; each failure has its own exit code (see EXIT_* below). With
`--nproc N` (and `--nnodes`/`--node-rank`/`--master` across machines) it trains with
DistributedDataParallel, and every rank must end with the same weights.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from torchenv_app import checkpoints, cluster, codecache, distributed, elastic, gpu, support
from torchenv_app.support import compile_unsupported

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOSS_DID_NOT_FALL = 3
EXIT_OUTPUT_NOT_WRITABLE = 4
EXIT_DEVICE_UNAVAILABLE = 5
EXIT_LOSS_NOT_FINITE = 6
EXIT_RANKS_DIVERGED = 7
EXIT_GPU_UNSUPPORTED = 8
EXIT_SHARED_MEMORY = 9
EXIT_RENDEZVOUS = 10
# A process or node of a multi-node job was lost, and torchrun has no restart left.
EXIT_PROCESS_LOST = 11
# --compile where compiled code cannot be loaded from any writable place (a noexec /tmp).
EXIT_NO_EXEC_MOUNT = 12
# --resume from a file that is not a checkpoint of this run's model and seed.
EXIT_BAD_CHECKPOINT = 13

# "Clearly below": the last epoch's mean loss must be at most this share of the first's.
REQUIRED_LOSS_RATIO = 0.5

FEATURES, CLASSES, HIDDEN = 16, 4, 64


class TrainError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def default_workers() -> int:
    """DataLoader worker processes: up to 2, where this process has cores to spare for them
    (its share of the cores when torchrun runs several on this node)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(2, share - 1))


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train", description="Train torchenv's seeded demo classifier.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto = cuda when visible, else cpu")
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=positive_int, default=4096, help="size of the synthetic dataset")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--features", type=positive_int, default=FEATURES, help="the size of one sample (bigger samples, bigger batches)")
    parser.add_argument(
        "--workers",
        type=count,
        default=default_workers(),
        help="DataLoader worker processes; they hand batches over through /dev/shm (0: load in this process)",
    )
    parser.add_argument("--lr", type=positive_float, default=0.003, help="Adam's learning rate")
    parser.add_argument("--compile", action="store_true", help="train a torch.compile'd model")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (float16, GPU only)")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("TORCHENV_OUT", "out")), help="where metrics.json and checkpoint.pt go"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument(
        "--ddp", action="store_true", help="DistributedDataParallel through torchrun even for one process (a one-GPU node of a job)"
    )
    cluster.add_arguments(parser)
    parser.add_argument("--max-restarts", type=count, default=0, help="times torchrun restarts the job's processes after a failure")
    parser.add_argument(
        "--rdzv-timeout", type=positive_int, default=cluster.RDZV_TIMEOUT, help="seconds to wait for node 0 and the other nodes"
    )
    args = parser.parse_args(argv)
    return args


def pick_device(requested: str, processes: int = 1, announce: bool = True) -> str:
    """The device to train on, refused in one line before anything starts when it cannot
    work: no GPU, a GPU this torch has no code for, or fewer GPUs than NCCL processes."""
    devices = gpu.visible_devices()
    if requested == "cuda" and not devices:
        raise TrainError(
            "--device cuda: no GPU is visible in this container; run it with --gpus all (compose: --profile gpu) or use --device cpu",
            EXIT_DEVICE_UNAVAILABLE,
        )
    if requested == "cpu" or not devices:
        return "cpu"
    if problem := gpu.unsupported(devices, gpu.compiled_archs()):
        if requested == "cuda":
            raise TrainError(f"--device cuda: {problem}", EXIT_GPU_UNSUPPORTED)
        if announce and os.environ.get("RANK", "0") == "0":
            print(f"train: training on the CPU: {problem}", file=sys.stderr)
        return "cpu"
    if processes > len(devices):
        raise TrainError(
            f"--nproc {processes} on cuda needs {processes} GPUs (NCCL: one process per GPU), {len(devices)} visible; "
            f"use --nproc {len(devices)} or --device cpu (gloo)",
            EXIT_DEVICE_UNAVAILABLE,
        )
    return "cuda"


def check_output_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TrainError(
            f"output directory {out} is not writable by uid {os.getuid()} ({error.strerror}); "
            "mount a writable directory there or pass --out /tmp/out",
            EXIT_OUTPUT_NOT_WRITABLE,
        ) from None


def make_dataset(samples: int, seed: int, features: int = FEATURES) -> tuple[Any, Any]:
    """Gaussian blobs: CLASSES centres in FEATURES dimensions, overlapping enough to need training."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, features, generator=generator) * 0.7
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    points = centres[labels] + torch.randn(samples, features, generator=generator)
    return points, labels


def make_model(features: int = FEATURES) -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


class Batches:
    """dataset[indices] -> the features and labels of those samples, so that each DataLoader
    worker makes whole batches (and hands them over through /dev/shm)."""

    def __init__(self, features: Any, labels: Any) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices: Any) -> tuple[Any, Any]:
        return self.features[indices], self.labels[indices]


def shared_memory_error(args: argparse.Namespace) -> TrainError:
    batch = support.shown_bytes(args.batch_size * args.features * 4)
    shm = support.shm_bytes()
    where = f"/dev/shm ({support.shown_bytes(shm)})" if shm is not None else "/dev/shm (none here)"
    return TrainError(
        f"a DataLoader worker died handing over a batch of {batch} through {where}: run the container with --shm-size 8g "
        "(or --ipc host; compose sets shm_size), or train with --workers 0",
        EXIT_SHARED_MEMORY,
    )


def grad_scaler(torch: Any, enabled: bool) -> Any:
    # torch.amp.GradScaler("cuda") from torch 2.3 on; torch 2.0/2.1 have only torch.cuda.amp's.
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def save_to(torch: Any, state: dict[str, Any], path: Path) -> None:
    torch.save(state, path)


def atomic_write(path: Path, writer: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    writer(partial)
    os.replace(partial, path)


def train(args: argparse.Namespace, ranks: distributed.Ranks | None = None) -> dict[str, Any]:
    device = pick_device(args.device)  # refused before anything starts
    import torch
    from torch import nn

    if args.compile and (reason := compile_unsupported()):
        raise TrainError(f"--compile: {reason}", EXIT_USAGE)
    if args.compile and (problem := codecache.prepare()):
        raise TrainError(f"--compile: {problem}", EXIT_NO_EXEC_MOUNT)
    main_process = ranks is None or ranks.is_main
    if main_process:
        check_output_dir(args.out)
    amp = args.amp and device == "cuda"
    if args.amp and not amp and main_process:
        print("train: --amp applies on a GPU only; training in float32 on the CPU", file=sys.stderr)
    kind = device
    if ranks is not None:
        device = distributed.init(ranks, device)

    torch.manual_seed(args.seed)
    features, labels = make_dataset(args.samples, args.seed, args.features)
    model = make_model(args.features).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = grad_scaler(torch, amp)
    checkpoint_path, metrics_path = args.out / "checkpoint.pt", args.out / "metrics.json"

    history: list[dict[str, float]] = []
    state: dict[str, Any] | None = None
    if args.resume and checkpoint_path.exists():
        try:
            state = checkpoints.load(torch, checkpoint_path, map_location=device)
        except checkpoints.CheckpointError as error:
            raise TrainError(f"--resume: {error}; remove it or pass another --out", EXIT_BAD_CHECKPOINT) from None
    elif ranks is not None:
        state = elastic.resume_state(torch, checkpoint_path, ranks.rank, ranks.world_size)
    if state is not None:
        if state["features"] != args.features:
            raise TrainError(
                f"--resume: {checkpoint_path} is of a model for --features {state['features']}, not {args.features}; "
                "pass the same --features or another --out",
                EXIT_USAGE,
            )
        if state["seed"] != args.seed:
            raise TrainError(
                f"--resume: {checkpoint_path} was trained with --seed {state['seed']}, not {args.seed}: its data and order differ; "
                "pass the same --seed or another --out",
                EXIT_USAGE,
            )
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise TrainError(
                f"--resume: {checkpoint_path} does not fit this model ({first}); pass another --out", EXIT_BAD_CHECKPOINT
            ) from None
        history = state["history"]
        if main_process:
            again = f" (restart {elastic.restart_count()})" if elastic.restart_count() else ""
            print(f"train: resumed{again} from {checkpoint_path} after epoch {len(history)}", flush=True)
    if ranks is not None:
        # DDP starts every rank from rank 0's weights and averages the gradients.
        model = nn.parallel.DistributedDataParallel(model)
    step = torch.compile(model) if args.compile else model
    loss_function = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(args.seed + 1)
    for _ in history:  # the orders of the epochs done: a resumed run draws what it would have
        torch.randperm(args.samples, generator=order)
    rank, world_size = (ranks.rank, ranks.world_size) if ranks else (0, 1)

    if main_process:
        print(
            f"train: {args.samples} samples, {args.epochs} epochs on {kind}"
            + (f", {world_size} processes ({distributed.backend()})" if ranks else "")
            + (" (compiled)" if args.compile else "")
            + (" with AMP" if amp else ""),
            flush=True,
        )
    for epoch in range(len(history) + 1, args.epochs + 1):
        start = time.perf_counter()
        # Every rank draws the same order and takes its own share of each batch.
        permutation = torch.randperm(args.samples, generator=order)
        total_loss, correct = 0.0, 0
        # A last batch with fewer samples than ranks would leave a rank an empty share (a NaN
        # loss there): every rank skips it alike.
        batches = [permutation[first : first + args.batch_size] for first in range(0, args.samples, args.batch_size)]
        shares = [batch[rank::world_size] for batch in batches if len(batch) >= world_size]
        loader = torch.utils.data.DataLoader(Batches(features, labels), sampler=shares, batch_size=None, num_workers=args.workers)
        for batch_x, batch_y in loader:
            x, y = batch_x.to(device), batch_y.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.float16) if amp else contextlib.nullcontext():
                logits = step(x)
                loss = loss_function(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainError(
                    f"loss became {loss.item()} in epoch {epoch}; lower --lr (now {args.lr}) or drop --amp",
                    EXIT_LOSS_NOT_FINITE,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        if ranks is not None:
            total_loss, correct = distributed.sum_across([total_loss, correct], device)
        seconds = time.perf_counter() - start
        history.append(
            {
                "epoch": epoch,
                "loss": total_loss / args.samples,
                "accuracy": correct / args.samples,
                "seconds": seconds,
                "samples_per_second": args.samples / seconds,
            }
        )
        if main_process:
            print(
                f"epoch {epoch:3d}/{args.epochs}  loss {history[-1]['loss']:.4f}  accuracy {history[-1]['accuracy']:.3f}  ({seconds:.2f}s)"
            )
            weights = model.module if ranks is not None else model
            saved = elastic.stamp(
                {
                    "model": weights.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "seed": args.seed,
                    "features": args.features,
                }
            )
            atomic_write(checkpoint_path, functools.partial(save_to, torch, saved))
        if ranks is not None and os.environ.get(elastic.FAIL_AFTER_EPOCH):
            elastic.inject_fault(torch, epoch, checkpoint_path, ranks.is_node_main)

    metrics = {
        "variant": os.environ.get("TORCHENV_VARIANT", ""),
        "torch": torch.__version__,
        "device": kind,
        "compile": args.compile,
        "amp": amp,
        "seed": args.seed,
        "samples": args.samples,
        "features": args.features,
        "workers": args.workers,
        "epochs": history,
        "first_loss": history[0]["loss"],
        "final_loss": history[-1]["loss"],
        "final_accuracy": history[-1]["accuracy"],
        "loss_fell": history[-1]["loss"] <= REQUIRED_LOSS_RATIO * history[0]["loss"],
    }
    if ranks is not None:
        metrics["distributed"] = agreement(model.module, ranks)
        # DDP's reducer goes before the process group: torch 2.0 deadlocks when the last
        # reference to a gloo group dies inside the reducer (its threads wait for the GIL).
        del step, model
        gc.collect()
        distributed.finish()
    if main_process:
        atomic_write(metrics_path, lambda path: path.write_text(json.dumps(metrics, indent=2) + "\n"))
    return metrics


def peer_lost_error(error: RuntimeError, ranks: distributed.Ranks) -> TrainError:
    first = (str(error).strip().splitlines() or ["?"])[0][:160]
    return TrainError(
        f"rank {ranks.rank} of {ranks.world_size} lost another process of the job ({first}); {restart_advice()}",
        EXIT_PROCESS_LOST,
    )


def restart_advice() -> str:
    """What happens next, by the restarts torchrun has left (the launcher says how many it was given)."""
    allowed, done = int(os.environ.get(distributed.MAX_RESTARTS_ENV, "0")), elastic.restart_count()
    if done < allowed:
        return f"torchrun starts every process again (restart {done + 1} of {allowed}) and train resumes from the last epoch's checkpoint"
    return f"rerun on every node, with --max-restarts {allowed + 1} or more to resume from the last epoch's checkpoint by itself"


def worker_died_of_shared_memory(error: RuntimeError) -> bool:
    """torch's own words when a DataLoader worker dies: of SIGBUS on a full /dev/shm, of an
    unexplained exit, or of a write to /dev/shm that found no space. Raised from its SIGCHLD
    handler, they can come from anywhere in the epoch, not only from the loader."""
    text = str(error)
    if "DataLoader worker" not in text:
        return False
    return "Bus error" in text or "exited unexpectedly" in text or "No space left on device" in text


def agreement(model: Any, ranks: distributed.Ranks) -> dict[str, Any]:
    """Every rank's parameter checksum; each node's first process says whether they agree."""
    import torch

    if os.environ.get("TORCHENV_TRAIN_DIVERGE_RANK") == str(ranks.rank):
        # Fault injection for torchenv's own tests: this rank's weights drift, the check must see it.
        with torch.no_grad():
            next(model.parameters()).add_(1e-3)
    checksums = distributed.gather(distributed.parameter_checksum(model), ranks.world_size)
    report = {
        "world_size": ranks.world_size,
        "nodes": ranks.nnodes,
        "backend": distributed.backend(),
        "checksums": checksums,
        "checksums_equal": len(set(checksums)) == 1,
    }
    if ranks.is_node_main:
        verdict = "agree" if report["checksums_equal"] else "DIFFER"
        print(
            f"train: node {ranks.node_rank}: final parameter checksums of all {ranks.world_size} ranks on {ranks.nnodes} node(s) "
            f"{verdict}: {', '.join(sorted(set(checksums)))}",
            flush=True,
        )
    return report


def launch_plan(args: argparse.Namespace, env: dict[str, str] | None = None) -> cluster.LaunchPlan:
    """The flags, filled in from the cluster engine's environment and then the defaults."""
    plan = cluster.plan_from(
        args, dict(os.environ) if env is None else env, gpu.auto_nproc, max_restarts=args.max_restarts, timeout=args.rdzv_timeout
    )
    if args.resume and plan.nnodes > 1:
        raise cluster.ClusterError("--resume works on one node only: the checkpoint is in node 0's --out")
    return plan


def launch(argv: list[str], args: argparse.Namespace, plan: cluster.LaunchPlan) -> int:
    try:
        pick_device(args.device, plan.nproc, announce=False)  # refused here, before torchrun starts a process
    except TrainError as error:
        print(f"train: error: {error}", file=sys.stderr)
        return error.exit_code
    if plan.engine:
        print(f"train: {plan.engine}: node {plan.node_rank} of {plan.nnodes}, rendezvous {plan.rdzv} at {plan.master}", flush=True)
    start = time.perf_counter()
    try:
        code = distributed.launch(argv, plan)
    except distributed.RendezvousFailed as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_RENDEZVOUS
    except distributed.ProcessLost as error:
        print(f"train: error: {error}", file=sys.stderr)
        return EXIT_PROCESS_LOST
    if code == EXIT_OK:
        print(f"train: {plan.nproc} process(es) on this node, one of {plan.nnodes}, finished in {time.perf_counter() - start:.1f}s")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    ranks = distributed.current()
    if ranks is None:
        try:
            plan = launch_plan(args)
        except cluster.ClusterError as error:
            print(f"train: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        if plan.nproc > 1 or plan.nnodes > 1 or args.ddp:
            return launch(argv, args, plan)
    try:
        try:
            metrics = train(args, ranks)
        except RuntimeError as error:
            if ranks is not None and elastic.peer_gone(error):
                raise peer_lost_error(error, ranks) from None
            if not worker_died_of_shared_memory(error):
                raise
            raise shared_memory_error(args) from None
    except TrainError as error:
        if ranks is None or ranks.is_main or error.exit_code == EXIT_PROCESS_LOST:
            print(f"train: error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    if ranks is not None and not metrics["distributed"]["checksums_equal"]:
        print("train: error: the ranks ended with different weights; DistributedDataParallel did not keep them in step", file=sys.stderr)
        return EXIT_RANKS_DIVERGED
    if ranks is not None and not ranks.is_main:
        return EXIT_OK
    if not metrics["loss_fell"]:
        print(
            f"train: error: loss did not fall clearly: first epoch {metrics['first_loss']:.4f}, "
            f"last {metrics['final_loss']:.4f} (needs <= {REQUIRED_LOSS_RATIO:.0%} of the first); try more --epochs",
            file=sys.stderr,
        )
        return EXIT_LOSS_DID_NOT_FALL
    print(f"train: loss fell from {metrics['first_loss']:.4f} to {metrics['final_loss']:.4f}; metrics in {args.out / 'metrics.json'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
