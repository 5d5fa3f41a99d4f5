"""The image's own checks fail when they should: the build gate, verify's driver check,
and train's distinct exit codes, each run in the real image."""

from __future__ import annotations

import json
import subprocess

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.matrix import Variant

from .conftest import TrackedContainer


def run_in(
    image: str, *command: str, env: dict[str, str] | None = None, mounts: tuple[str, ...] = (), platform: str | None = None
) -> subprocess.CompletedProcess[str]:
    extra = [flag for key, value in (env or {}).items() for flag in ("--env", f"{key}={value}")]
    extra += [flag for mount in mounts for flag in ("--volume", mount)]
    args = engine.run_args(image, list(command), extra=extra, platform=platform)
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


def gate(image: str, variant: Variant, **overrides: str) -> subprocess.CompletedProcess[str]:
    expected = {
        "VARIANT": variant.name,
        "TORCH_VERSION": variant.torch,
        "TORCHVISION_VERSION": variant.torchvision,
        "TORCHAUDIO_VERSION": variant.torchaudio,
        "CUDA_VERSION": variant.cuda,
        **overrides,
    }
    script = PROJECT_ROOT / "docker" / "build" / "check_venv.py"
    return run_in(image, "python", "/check_venv.py", env=expected, mounts=(f"{script}:/check_venv.py:ro",), platform=variant.platform)


def test_build_gate_accepts_the_matrix_build(image: str, variant: Variant) -> None:
    result = gate(image, variant)
    assert result.returncode == 0, result.stderr


def test_build_gate_refuses_a_cpu_only_expectation_mismatch(image: str, variant: Variant) -> None:
    wrong = "none" if variant.cuda != "none" else "12.1"
    result = gate(image, variant, CUDA_VERSION=wrong)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"torchenv: error: variant {variant.name}: ")


def test_build_gate_refuses_another_torch_version(image: str, variant: Variant) -> None:
    result = gate(image, variant, TORCH_VERSION="9.9.9")
    assert result.returncode == 1
    assert f"torch is {variant.torch}, the matrix says 9.9.9" in result.stderr


def test_verify_names_the_minimum_for_a_too_old_driver(container: TrackedContainer, variant: Variant) -> None:
    if variant.min_driver is None:
        pytest.skip("a CPU-only variant has no driver minimum")
    code = (
        'from torchenv_app import gpu, verify; gpu.driver_version = lambda: \\"418.40.04\\"; '
        'c = verify.check_gpu(); print(c.status + \\"|\\" + c.detail)'
    )
    status, detail = container.host.check_output(f'python -c "{code}"').split("|", 1)
    assert status == "fail"
    assert f"NVIDIA driver 418.40.04 is too old for CUDA {variant.cuda}: this variant needs >= {variant.min_driver}" in detail


@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        ("--epochs 0", 2, "--epochs: must be at least 1"),
        ("--device tpu", 2, "invalid choice: 'tpu'"),
        ("--device cuda", 5, "--device cuda: no GPU is visible in this container"),
        ("--out /proc/torchenv", 4, "output directory /proc/torchenv is not writable by uid 1000"),
        ("--lr 1e-12 --epochs 2", 3, "loss did not fall clearly"),
        ("--lr 1e20 --epochs 3", 6, "loss became nan"),
    ],
)
def test_train_fails_with_a_distinct_code(container: TrackedContainer, arguments: str, exit_code: int, message: str) -> None:
    result = container.host.run(f"train --out /tmp/train-errors {arguments}")
    assert result.rc == exit_code, result.stdout + result.stderr
    assert message in result.stderr


def test_layers_share_the_base_and_end_with_the_app(image: str, variant: Variant) -> None:
    """Every variant starts with the base's layers; the app code is the last layer, so
    editing it rebuilds nothing beneath."""
    from torchenv.build import base_image_for
    from torchenv.settings import Settings

    def layers(reference: str) -> list[str]:
        return engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", reference).stdout.strip().strip("[]").split(",")

    base = layers(base_image_for(variant, Settings.load()))
    mine = layers(image)
    assert mine[: len(base)] == base
    history = engine.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout.splitlines()
    layer_steps = [step for step in history if "COPY" in step or "RUN" in step or "ADD" in step]
    assert "docker/app" in layer_steps[0] or "/opt/torchenv" in layer_steps[0], layer_steps[0]


def test_train_resumes_from_its_checkpoint(container: TrackedContainer) -> None:
    first = container.host.run("train --epochs 2 --out /tmp/resume")
    assert first.rc == 0, first.stderr
    second = container.host.run("train --epochs 4 --resume --out /tmp/resume")
    assert second.rc == 0, second.stderr
    assert "resumed from /tmp/resume/checkpoint.pt after epoch 2" in second.stdout
    assert "epoch   1/4" not in second.stdout and "epoch   3/4" in second.stdout
    metrics = json.loads(container.host.file("/tmp/resume/metrics.json").content_string)
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3, 4]
