"""python -m finetune [--out DIR] [--device cpu|cuda] [--steps a,b] [--quick]: the pipeline,
step by step; each step's metrics land in OUT/<step>.json."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from finetune import steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/out/finetune"), help="where every step writes (default /out/finetune)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--steps", default=",".join(steps.STEPS), help="comma-separated steps to run, in order (default: all six)")
    parser.add_argument("--quick", action="store_true", help="a few steps of each, for a smoke test (claims not expected to hold)")
    options = parser.parse_args(argv)
    chosen = [name.strip() for name in options.steps.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in steps.STEPS]
    if unknown:
        print(f"finetune: error: no step {', '.join(unknown)}; the steps are {', '.join(steps.STEPS)}", file=sys.stderr)
        return 2
    if options.device == "cuda" and not steps.torch.cuda.is_available():
        print(
            "finetune: error: --device cuda but torch sees no GPU; run the container with --gpus all, or use --device cpu", file=sys.stderr
        )
        return 3
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(
            f"finetune: error: cannot write {options.out} ({error.strerror}); mount a writable folder there or pass --out", file=sys.stderr
        )
        return 4
    for name in chosen:
        started = time.monotonic()
        metrics = steps.STEPS[name](options.out, options.quick, options.device)
        metrics["seconds"] = round(time.monotonic() - started, 2)
        steps.write_metrics(options.out, name, metrics)
        shown = {key: value for key, value in metrics.items() if not isinstance(value, list)}
        print(f"finetune: {name}: {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
