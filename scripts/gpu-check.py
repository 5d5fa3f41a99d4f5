#!/usr/bin/env python3
"""The in-image app (docker/app) run as plain Python on a machine with its own torch and,
where it has one, a GPU: no Docker, no network, nothing installed. Prints one summary line
per check and exits non-zero when one failed; a check it cannot run without a GPU is
skipped, saying why.

    python3 scripts/gpu-check.py [--out DIR] [--epochs N]

Checks: `verify --json`; each visible GPU against the GPU code compiled into torch;
`train --device cuda` plain, with --amp and with --compile; a one-process DDP run over NCCL.
Without a GPU: verify, the CPU trainings (plain, --compile) and one gloo process.
Every training's result is read back from the metrics.json it wrote, not from its output.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "docker" / "app"
# One check's limit; all of them together stay under 6 minutes on a GPU machine.
CHECK_TIMEOUT_S = 150


@dataclass
class Outcome:
    status: str  # PASS, FAIL or SKIP
    detail: str


class Checks:
    def __init__(self, out: Path, epochs: int) -> None:
        self.out = out
        self.epochs = epochs
        self.environment = self._environment()
        self.results: list[tuple[str, Outcome]] = []

    def _environment(self) -> dict[str, str]:
        """The app's own code, which variant has code for which GPU (the matrix's, as the
        image has it), and no expectation of an image's TORCHENV_* variables."""
        environment = {name: value for name, value in os.environ.items() if not name.startswith("TORCHENV_")}
        environment.update(
            PYTHONPATH=str(APP),
            PYTHONDONTWRITEBYTECODE="1",
            TORCHINDUCTOR_CACHE_DIR=str(self.out / "inductor"),
            TRITON_CACHE_DIR=str(self.out / "triton"),
        )
        sys.path.insert(0, str(ROOT))
        try:  # torchenv reads the matrix with tomllib: Python 3.11 or later
            from torchenv.model.matrix import load_matrix
            from torchenv.model.variant_facts import variant_facts_json
        except ImportError as error:
            print(f"gpu-check: note: no other variant is named in the checks' advice (images/matrix.toml unread: {error})")
            return environment
        variants = self.out / "variants.json"
        variants.write_text(variant_facts_json(load_matrix()))
        environment["TORCHENV_VARIANTS_FILE"] = str(variants)
        return environment

    def run(self, name: str, module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        """python -m MODULE ARGUMENTS, its output kept in OUT/NAME.log."""
        command = [sys.executable, "-m", module, *arguments]
        # A session of its own, so that a timeout also ends the ranks torchrun started.
        process = subprocess.Popen(
            command, env=self.environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=CHECK_TIMEOUT_S)
            result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            result = subprocess.CompletedProcess(command, 124, stdout, stderr + f"\ntimed out after {CHECK_TIMEOUT_S} s")
        (self.out / f"{name}.log").write_text(f"$ {' '.join(command)}\n{result.stdout}\n--- stderr ---\n{result.stderr}")
        return result

    def record(self, name: str, outcome: Outcome, seconds: float | None = None) -> None:
        timing = f" ({seconds:.0f} s)" if seconds is not None else ""
        print(f"gpu-check: {outcome.status} {name}: {outcome.detail}{timing}", flush=True)
        self.results.append((name, outcome))

    def train(self, name: str, *arguments: str, expect: dict[str, object]) -> None:
        out = self.out / name
        start = time.perf_counter()
        result = self.run(name, "torchenv_app.train", "--epochs", str(self.epochs), "--out", str(out), *arguments)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            self.record(name, Outcome("FAIL", f"exit {result.returncode}: {last[:300]}"), seconds)
            return
        try:
            metrics = json.loads((out / "metrics.json").read_text())
        except (OSError, ValueError) as error:
            self.record(name, Outcome("FAIL", f"no readable metrics.json: {error}"), seconds)
            return
        found = {key: metrics.get("distributed", {}).get("backend") if key == "backend" else metrics.get(key) for key in expect}
        if found != expect or not metrics.get("loss_fell"):
            self.record(name, Outcome("FAIL", f"metrics say {found}, loss fell: {metrics.get('loss_fell')}; expected {expect}"), seconds)
            return
        detail = f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f} on {metrics['device']}, torch {metrics['torch']}"
        self.record(name, Outcome("PASS", detail), seconds)

    def skip(self, name: str, why: str) -> None:
        self.record(name, Outcome("SKIP", why))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where each check's log and metrics go (default: a new temporary directory)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each training (default 4)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    checks = Checks(out, args.epochs)
    begin = time.perf_counter()

    start = time.perf_counter()
    result = checks.run("verify", "torchenv_app.verify", "--json")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        checks.record("verify --json", Outcome("FAIL", f"exit {result.returncode}, no JSON report: {result.stderr.strip()[-300:]}"))
        return 1
    verdict = {check["name"]: check for check in report["checks"]}
    failed = [f"{name}: {check['detail']}" for name, check in verdict.items() if check["status"] == "fail"]
    summary = ", ".join(f"{name} {check['status']}" for name, check in verdict.items())
    checks.record(
        "verify --json", Outcome("PASS" if report["passed"] else "FAIL", "; ".join(failed) or summary), time.perf_counter() - start
    )

    arch = verdict.get("gpu arch", {"status": "skip", "detail": "verify has no gpu arch check"})
    status = {"ok": "PASS", "fail": "FAIL"}.get(arch["status"], "SKIP")
    checks.record("gpu architecture", Outcome(status, arch["detail"]))
    on_gpu = verdict.get("gpu", {}).get("status") == "ok" and arch["status"] == "ok"
    why_not = verdict.get("gpu", {}).get("detail", "no GPU") if arch["status"] != "fail" else "the GPU has no code in this torch"
    compile_check = verdict.get("torch.compile", {"status": "skip", "detail": "not checked"})

    device = "cuda" if on_gpu else "cpu"
    checks.train(f"train --device {device}", "--device", device, expect={"device": device, "compile": False})
    if on_gpu:
        checks.train("train --device cuda --amp", "--device", "cuda", "--amp", expect={"device": "cuda", "amp": True})
    else:
        checks.skip("train --device cuda --amp", f"needs a GPU: {why_not}")
    if compile_check["status"] == "skip":
        checks.skip(f"train --device {device} --compile", compile_check["detail"])
    else:
        checks.train(f"train --device {device} --compile", "--device", device, "--compile", expect={"device": device, "compile": True})
    if on_gpu:
        checks.train("one-process NCCL", "--ddp", "--nproc", "1", "--device", "cuda", expect={"device": "cuda", "backend": "nccl"})
    else:
        checks.skip("one-process NCCL", f"needs a GPU: {why_not}")
        checks.train("one-process gloo", "--ddp", "--nproc", "1", "--device", "cpu", expect={"device": "cpu", "backend": "gloo"})

    counts = {status: sum(1 for _, outcome in checks.results if outcome.status == status) for status in ("PASS", "FAIL", "SKIP")}
    print(
        f"gpu-check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
        f"in {time.perf_counter() - begin:.0f} s; logs in {out}",
        flush=True,
    )
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
