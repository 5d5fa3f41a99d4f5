"""python -m raytrain [--address local|auto|HOST:PORT] [--workers 2] [--min-nodes N]
[--storage DIR] [--out DIR] [--quick]: torchenv's demo classifier trained by Ray Train's
TorchTrainer, N workers on CPUs (gloo); OUT/result.json says how it went.

--address local (the default, unless RAY_ADDRESS is set as `ray job submit` sets it) starts
a Ray of this process's own, offline, for one node; anything else joins a running cluster
(`auto`: the one started on this node by `ray start`)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_USAGE = 2
EXIT_LOSS_DID_NOT_FALL = 3
EXIT_OUTPUT_NOT_WRITABLE = 4
EXIT_RANKS_DIVERGED = 7
EXIT_TOO_FEW_NODES = 12
EXIT_NO_CLUSTER = 13

# The smallest object store Ray accepts is 75 MiB; the demo puts next to nothing in it.
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m raytrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--address", default=os.environ.get("RAY_ADDRESS") or "local", help="local (default), auto, or the head's HOST:PORT"
    )
    parser.add_argument("--workers", type=positive_int, default=2, help="TorchTrainer workers (torch ranks), default 2")
    parser.add_argument("--cpus-per-worker", type=positive_int, default=1)
    parser.add_argument(
        "--gpus-per-worker", type=int, default=0, choices=[0, 1], help="1: each worker trains on a GPU (NCCL), 0 (default): on CPUs (gloo)"
    )
    parser.add_argument(
        "--placement", default="SPREAD", choices=["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"], help="of the workers over nodes"
    )
    parser.add_argument(
        "--min-nodes", type=positive_int, default=1, help="wait for this many nodes, and fail unless the workers ran on as many"
    )
    parser.add_argument("--wait", type=positive_int, default=120, help="seconds to wait for --min-nodes nodes to join")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("TORCHENV_OUT", "/out")) / "raytrain", help="where result.json goes"
    )
    parser.add_argument(
        "--storage", type=Path, help="RunConfig.storage_path: every node must see it at this path (default OUT/ray-results)"
    )
    parser.add_argument("--name", default="raytrain", help="RunConfig.name: the run's folder under --storage")
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--samples", type=positive_int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="2 epochs of 1024 samples, for a smoke test (the loss is not required to halve)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.samples = 2, 1024
    if args.storage is None:
        args.storage = args.out / "ray-results"
    return args


def start_ray(args: argparse.Namespace) -> None:
    import ray

    # The workers' print() as plain lines on the driver (Ray Train's patch doubled them).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if args.address == "local":
        # Offline and read-only but for /tmp: loopback only (no probe for this host's
        # address), no dashboard, no usage stats, the object store small enough for any /dev/shm.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray 2.52+ turns token authentication on for a local cluster and, lacking a token,
        # writes one to ~/.ray/auth_token: a read-only HOME refuses that. A token of this
        # run's own, in the environment (RAY_AUTH_TOKEN), which Ray's processes inherit.
        if os.environ.get("RAY_AUTH_MODE", "token") == "token" and not (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
        ):
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        ray.init(
            num_cpus=args.workers * args.cpus_per_worker,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            _node_ip_address="127.0.0.1",
            configure_logging=False,
        )
    else:
        ray.init(address=args.address)


def wait_for_nodes(wanted: int, seconds: int) -> int:
    """The number of alive nodes, once at least WANTED have joined (or the time is up)."""
    import ray

    deadline = time.monotonic() + seconds
    while True:
        alive = sum(1 for node in ray.nodes() if node.get("Alive"))
        if alive >= wanted or time.monotonic() >= deadline:
            return alive
        time.sleep(1)


def fit(args: argparse.Namespace) -> Any:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raytrain.loop import train_loop_per_worker

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"epochs": args.epochs, "samples": args.samples, "seed": args.seed, "gpu": bool(args.gpus_per_worker)},
        torch_config=TorchConfig(backend="nccl" if args.gpus_per_worker else "gloo", timeout_s=300),
        scaling_config=ScalingConfig(
            num_workers=args.workers,
            use_gpu=bool(args.gpus_per_worker),
            resources_per_worker={"CPU": args.cpus_per_worker, **({"GPU": args.gpus_per_worker} if args.gpus_per_worker else {})},
            placement_strategy=args.placement,
        ),
        run_config=RunConfig(storage_path=str(args.storage.resolve()), name=args.name),
    )
    return trainer.fit()


def checkpoint_files(result: Any) -> dict[str, Any]:
    """What rank 0 saved, read back from the storage where Ray put it."""
    if result.checkpoint is None:
        return {"path": None, "files": []}
    with result.checkpoint.as_directory() as folder:
        files = sorted(path.name for path in Path(folder).iterdir())
        saved = json.loads((Path(folder) / "metrics.json").read_text()) if "metrics.json" in files else {}
    return {"path": result.checkpoint.path, "files": files, "final_loss": saved.get("final_loss")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        args.storage.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(
            f"raytrain: error: cannot write {error.filename} ({error.strerror}); mount a writable folder there or pass --out/--storage",
            file=sys.stderr,
        )
        return EXIT_OUTPUT_NOT_WRITABLE
    import ray
    from ray.train import TrainingFailedError

    started = time.monotonic()
    try:
        start_ray(args)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(
            f"raytrain: error: cannot join Ray at {args.address} ({reason}); start the head (ray start --head) "
            "and check --address (or RAY_ADDRESS) and that RAY_AUTH_TOKEN is the cluster's",
            file=sys.stderr,
        )
        return EXIT_NO_CLUSTER
    try:
        nodes = wait_for_nodes(args.min_nodes, args.wait)
        if nodes < args.min_nodes:
            print(
                f"raytrain: error: {nodes} node(s) of the {args.min_nodes} wanted joined within {args.wait} s; "
                "check `ray status` on the head",
                file=sys.stderr,
            )
            return EXIT_TOO_FEW_NODES
        print(f"raytrain: {nodes} node(s), {args.workers} workers ({args.placement}), storage {args.storage}", flush=True)
        try:
            result = fit(args)
        except TrainingFailedError as error:
            print(f"raytrain: error: training failed: {error}", file=sys.stderr)
            return EXIT_TRAINING_FAILED
        metrics = dict(result.metrics or {})
        summary = {
            "ray": ray.__version__,
            "cluster_nodes": nodes,
            "seconds": round(time.monotonic() - started, 1),
            "quick": args.quick,
            "metrics": metrics,
            "checkpoint": checkpoint_files(result),
        }
    finally:
        ray.shutdown()
    (args.out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(
        f"raytrain: {metrics.get('world_size')} ranks on {metrics.get('nodes')} node(s) ({metrics.get('backend')}): "
        f"loss {metrics.get('first_loss', float('nan')):.4f} -> {metrics.get('final_loss', float('nan')):.4f}; "
        f"checkpoint {summary['checkpoint']['path']}; {args.out / 'result.json'}",
        flush=True,
    )
    if not metrics.get("checksums_equal"):
        print("raytrain: error: the ranks ended with different weights", file=sys.stderr)
        return EXIT_RANKS_DIVERGED
    if metrics.get("nodes", 0) < args.min_nodes:
        print(
            f"raytrain: error: the workers ran on {metrics.get('nodes')} node(s), not {args.min_nodes}; try --placement STRICT_SPREAD",
            file=sys.stderr,
        )
        return EXIT_TOO_FEW_NODES
    if not args.quick and not metrics.get("loss_fell"):
        print("raytrain: error: the loss did not fall to half its first value; try more --epochs", file=sys.stderr)
        return EXIT_LOSS_DID_NOT_FALL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
