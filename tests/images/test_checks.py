"""The image's own checks fail when they should: the build gate, verify's driver check,
and train's distinct exit codes, each run in the real image."""

from __future__ import annotations

import json

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import RunOptions, RunResult
from torchenv.model import names
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.base import base_reference

from .conftest import GPUS, TrackedContainer

GPUS_REQUESTED = GPUS is not None


def run_in(
    image: str,
    *command: str,
    env: dict[str, str] | None = None,
    mounts: dict[str, tuple[str, str]] | None = None,
    platform: str | None = None,
) -> RunResult:
    return engine.get().run(image, command, RunOptions(platform=platform, environment=env or {}, volumes=mounts or {}), timeout=300)


def gate(image: str, variant: Variant, **overrides: str) -> RunResult:
    expected = {
        "VARIANT": variant.name,
        "TORCH_VERSION": variant.torch,
        "TORCHVISION_VERSION": variant.torchvision,
        "TORCHAUDIO_VERSION": variant.torchaudio,
        "CUDA_VERSION": variant.cuda,
        "GPU_ARCHS": names.gpu_archs_label(variant.gpu_archs),
        **overrides,
    }
    script = PROJECT_ROOT / "docker" / "build" / "check_venv.py"
    return run_in(
        image, "python", "/check_venv.py", env=expected, mounts={str(script): ("/check_venv.py", "ro")}, platform=variant.platform
    )


def test_build_gate_accepts_the_matrix_build(image: str, variant: Variant) -> None:
    result = gate(image, variant)
    assert result.exit_code == 0, result.stderr


def test_build_gate_refuses_a_cpu_only_expectation_mismatch(image: str, variant: Variant) -> None:
    wrong = "none" if variant.is_cuda else "12.1"
    result = gate(image, variant, CUDA_VERSION=wrong)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"torchenv: error: variant {variant.name}: ")


def test_build_gate_refuses_another_torch_version(image: str, variant: Variant) -> None:
    result = gate(image, variant, TORCH_VERSION="9.9.9")
    assert result.exit_code == 1
    assert f"torch is {variant.torch}, the matrix says 9.9.9" in result.stderr


@pytest.mark.cuda_only
def test_verify_names_the_minimum_for_a_too_old_driver(container: TrackedContainer, variant: Variant) -> None:
    code = (
        'from torchenv_app import gpu, verify; gpu.driver_version = lambda: \\"418.40.04\\"; '
        'c = verify.check_gpu(); print(c.status + \\"|\\" + c.detail)'
    )
    status, detail = container.host.check_output(f'python -c "{code}"').split("|", 1)
    assert status == "fail"
    assert f"NVIDIA driver 418.40.04 is too old for CUDA {variant.cuda}: this variant needs >= {variant.min_driver}" in detail


def test_build_gate_refuses_other_gpu_code(image: str, variant: Variant) -> None:
    result = gate(image, variant, GPU_ARCHS="sm_99")
    assert result.exit_code == 1
    found = " ".join(variant.gpu_archs) or "none"
    assert f"torch has GPU code for {found}, the matrix says sm_99" in result.stderr


# A GPU of a capability this variant has no code for, from a stub of the device query:
# the first of these whose code the variant lacks.
CANDIDATE_GPUS = (("NVIDIA H200", (9, 0), "sm_90"), ("Tesla K80", (3, 7), "sm_37"), ("NVIDIA B200", (10, 0), "sm_100"))


def missing_gpu(variant: Variant) -> tuple[str, tuple[int, int], str]:
    return next(gpu for gpu in CANDIDATE_GPUS if gpu[2] not in variant.gpu_archs)


def stubbed(variant: Variant, call: str) -> str:
    name, capability, _ = missing_gpu(variant)
    return f'from torchenv_app import gpu, train, verify; gpu.visible_devices = lambda: [gpu.Device(0, "{name}", {capability!r})]; {call}'


def advice(variant: Variant, matrix: Matrix) -> str:
    """What the refusal must end with: the variants with code for that GPU, by the matrix's own lists."""
    _, _, arch = missing_gpu(variant)
    fitting = [name for name, other in matrix.variants.items() if arch in other.gpu_archs]
    if not fitting:
        return "no torchenv variant has code for it; a newer torch release is needed"
    return f"use the {' or '.join(fitting)} variant" + ("s" if len(fitting) > 1 else "")


@pytest.mark.cuda_only
def test_verify_names_the_variants_for_a_gpu_without_code(container: TrackedContainer, variant: Variant, matrix: Matrix) -> None:
    code = stubbed(variant, 'c = verify.check_gpu_arch(); print(c.status + "|" + c.detail)')
    status, detail = container.host.check_output(f"python -c '{code}'").split("|", 1)
    assert status == "fail"
    assert "cannot run this torch" in detail and "\n" not in detail
    assert detail.endswith(advice(variant, matrix)), detail


@pytest.mark.cuda_only
def test_train_refuses_a_gpu_without_code_before_it_starts(container: TrackedContainer, variant: Variant, matrix: Matrix) -> None:
    code = stubbed(variant, 'import sys; sys.exit(train.main(["--device", "cuda", "--out", "/tmp/refused"]))')
    result = container.host.run(f"python -c '{code}'")
    assert result.rc == 8, result.stdout + result.stderr
    assert advice(variant, matrix) in result.stderr
    assert not container.host.file("/tmp/refused").exists


def test_train_refuses_what_cuda_cannot_do_here(container: TrackedContainer, variant: Variant) -> None:
    """Without a GPU, --device cuda at all; with the GPU job's GPUs, more NCCL processes than GPUs."""
    if GPUS_REQUESTED and variant.is_cuda:
        arguments, message = "--device cuda --nproc 64", "--nproc 64 on cuda needs 64 GPUs"
    else:
        arguments, message = "--device cuda", "--device cuda: no GPU is visible in this container"
    result = container.host.run(f"train --out /tmp/train-errors {arguments}")
    assert result.rc == 5, result.stdout + result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("arguments", "exit_code", "message"),
    [
        ("--epochs 0", 2, "--epochs: must be at least 1"),
        ("--device tpu", 2, "invalid choice: 'tpu'"),
        ("--out /proc/torchenv", 4, "output directory /proc/torchenv is not writable by uid 1000"),
        ("--lr 1e-12 --epochs 2", 3, "loss did not fall clearly"),
        ("--lr 1e20 --epochs 3", 6, "loss became nan"),
    ],
)
def test_train_fails_with_a_distinct_code(container: TrackedContainer, arguments: str, exit_code: int, message: str) -> None:
    result = container.host.run(f"train --out /tmp/train-errors {arguments}")
    assert result.rc == exit_code, result.stdout + result.stderr
    assert message in result.stderr


@pytest.mark.variant_image
def test_layers_share_the_base_and_end_with_the_app(image: str, variant: Variant, settings: Settings) -> None:
    """Every variant starts with the base's layers; the app code is the last layer, so
    editing it rebuilds nothing beneath."""
    docker = engine.get()
    mine = docker.require_image(image).layers
    suite = variant.debian_suite
    base = docker.image(base_reference(suite, settings, variant.platform) if suite else variant.base)
    if base is not None:  # a pulled image (--image) is tested without its base at hand
        assert mine[: len(base.layers)] == base.layers
    layer_steps = [step for step, _ in docker.history(image) if "COPY" in step or "RUN" in step or "ADD" in step]  # newest first
    assert "docker/app" in layer_steps[0] or "/opt/torchenv" in layer_steps[0], layer_steps[0]
    if suite:  # the first layer is mmdebstrap's root filesystem
        assert "rootfs.tar" in layer_steps[-1], layer_steps[-1]


def test_train_resumes_from_its_checkpoint(container: TrackedContainer) -> None:
    first = container.host.run("train --epochs 2 --out /tmp/resume")
    assert first.rc == 0, first.stderr
    second = container.host.run("train --epochs 4 --resume --out /tmp/resume")
    assert second.rc == 0, second.stderr
    assert "resumed from /tmp/resume/checkpoint.pt after epoch 2" in second.stdout
    assert "epoch   1/4" not in second.stdout and "epoch   3/4" in second.stdout
    metrics = json.loads(container.host.file("/tmp/resume/metrics.json").content_string)
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3, 4]
