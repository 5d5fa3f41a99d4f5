"""scripts/gpu-check.py, the check prepared for a GPU machine without Docker: here it runs
the app as plain Python from the source tree (not the image's copy, with none of the
image's TORCHENV_* variables) on the image's torch, in a hardened, offline container. With
no GPU it must run its CPU parts and skip the GPU parts, saying why; with the GPU job's
GPUs every GPU part must pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import RunOptions
from torchenv.model.matrix import Variant

from .conftest import GPUS, compiles

SUMMARY = re.compile(r"^gpu-check: (PASS|FAIL|SKIP) ([^:]+): (.*)$", re.M)


@pytest.mark.cuda_only
def test_gpu_check_runs_the_app_as_plain_python(image: str, variant: Variant, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # written by the image's user
    strip = " ".join(f"-u {name}" for name in ("PYTHONPATH", "TORCHENV_VARIANT", "TORCHENV_TORCH", "TORCHENV_CUDA", "TORCHENV_PYTHON"))
    command = ["sh", "-c", f"env {strip} python /src/scripts/gpu-check.py --out /check --epochs 2"]
    options = RunOptions(
        platform=variant.platform,
        gpus=GPUS,
        volumes={str(PROJECT_ROOT): ("/src", "ro"), str(tmp_path): ("/check", "rw")},
    )
    result = engine.get().run(image, command, options, timeout=400)
    assert result.exit_code == 0, result.output
    lines = {name: (status, detail) for status, name, detail in SUMMARY.findall(result.stdout)}
    compile_name = f"train --device {'cuda' if GPUS else 'cpu'} --compile"
    if GPUS is None:
        assert lines["gpu architecture"][0] == "SKIP" and "no GPU visible" in lines["gpu architecture"][1]
        assert lines["train --device cuda --amp"][0] == lines["one-process NCCL"][0] == "SKIP"
        assert lines["one-process NCCL"][1].startswith("needs a GPU: none visible")
        expected_pass = {"verify --json", "train --device cpu", "one-process gloo"}
    else:
        expected_pass = {"verify --json", "gpu architecture", "train --device cuda", "train --device cuda --amp", "one-process NCCL"}
    assert {name for name, (status, _) in lines.items() if status == "PASS"} >= expected_pass, result.stdout
    assert not [name for name, (status, _) in lines.items() if status == "FAIL"], result.stdout
    # torch 2.0 cannot compile on Python 3.11: skipped with verify's reason.
    assert lines[compile_name][0] == ("PASS" if compiles(variant) else "SKIP"), lines[compile_name]

    # Read back what the runs wrote, not the script's summary.
    plain = json.loads((tmp_path / ("train --device cuda" if GPUS else "train --device cpu") / "metrics.json").read_text())
    assert (plain["device"], len(plain["epochs"]), plain["variant"]) == ("cuda" if GPUS else "cpu", 2, "")
    assert plain["final_loss"] < plain["first_loss"]
    ddp = json.loads((tmp_path / ("one-process NCCL" if GPUS else "one-process gloo") / "metrics.json").read_text())
    assert (ddp["distributed"]["backend"], ddp["distributed"]["world_size"]) == ("nccl" if GPUS else "gloo", 1)
    verify_log = (tmp_path / "verify.log").read_text()
    assert '"variant": ""' in verify_log  # none of the image's expectations reached it
