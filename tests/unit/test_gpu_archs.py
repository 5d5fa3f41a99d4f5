"""Which variant runs on which GPU: the compatibility rule, the matrix's GPU code, what the
build writes into the image, and the one-line refusals of `verify` and `train` for a GPU
from a stub of the device query (torch is not needed for any of it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.model import compat, variant_facts
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline.build import requirements_context

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import archs, gpu, train

CU117 = compat.GPU_ARCHS[("2.0", "11.7")]
H200 = gpu.Device(0, "NVIDIA H200", (9, 0))
RTX_4090 = gpu.Device(0, "NVIDIA GeForce RTX 4090", (8, 9))


@pytest.mark.parametrize(
    ("compiled", "capability", "runs"),
    [
        (["sm_86"], (8, 9), True),  # same major, lower minor: Ada runs Ampere code
        (["sm_86"], (8, 0), False),  # a lower minor than the code's
        (CU117, (9, 0), False),  # Hopper needs sm_90 or PTX
        (["sm_80", "compute_80"], (9, 0), True),  # PTX of a lower capability is compiled by the driver
        (["compute_90"], (8, 6), False),
        (["sm_90a"], (9, 0), True),
        (["sm_90a"], (9, 1), False),  # arch-specific code runs on exactly that capability
        (["sm_37"], (3, 5), False),
        (["sm_100"], (10, 0), True),
        ([], (8, 0), False),
    ],
)
def test_a_gpu_runs_code_of_its_major_version_and_a_lower_minor_or_ptx(
    compiled: list[str], capability: tuple[int, int], runs: bool
) -> None:
    assert archs.runs_on(compiled, capability) is runs


def test_a_malformed_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="not a GPU architecture like sm_86"):
        archs.parse("ampere")


def test_generations_by_name() -> None:
    assert archs.generations(CU117) == ["Kepler 3.7", "Maxwell", "Pascal", "Volta", "Turing", "Ampere", "Ada"]
    assert archs.generations(compat.GPU_ARCHS[("2.1", "12.1")])[-1] == "Hopper"


def test_every_official_cuda_build_has_its_gpu_code_recorded() -> None:
    for name, release in compat.TORCH_RELEASES.items():
        for cuda in release.builds:
            found = compat.gpu_archs(name, cuda)
            assert (cuda == compat.CPU_ONLY) == (found == ()), (name, cuda)
            assert all(archs.parse(arch) for arch in found)


def test_only_cuda_11_8_and_12_builds_run_on_hopper() -> None:
    matrix = load_matrix()
    fitting = archs.fitting_variants({n: v.gpu_archs for n, v in matrix.variants.items()}, (9, 0))
    assert fitting == ["cu118", "cu121"]


def test_the_image_gets_every_variants_facts(tmp_path: Path) -> None:
    settings = Settings.load(overrides={"work_dir": tmp_path})
    matrix = load_matrix(settings.matrix)
    context = requirements_context(matrix.get("cu117"), settings, None)
    written = json.loads((context / "app" / variant_facts.FILE_NAME).read_text())
    assert set(written) == set(matrix.variants) and written["cpu"]["gpu_archs"] == []
    assert written["cu117"]["gpu_archs"] == list(CU117) and written["cu121"]["min_driver"] == "525.60.13"


@pytest.fixture
def variants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "variants.json"
    path.write_text(variant_facts.variant_facts_json(load_matrix()))
    monkeypatch.setenv("TORCHENV_VARIANTS_FILE", str(path))
    return path


def test_an_unsupported_gpu_is_named_with_the_variants_that_fit(variants_file: Path) -> None:
    message = gpu.unsupported([H200], list(CU117))
    assert message == (
        "GPU 0 (NVIDIA H200, compute capability 9.0, Hopper) cannot run this torch, built for sm_37 … sm_86: "
        "use the cu118 or cu121 variants"
    )
    assert gpu.unsupported([RTX_4090], list(CU117)) is None


def test_a_gpu_no_variant_fits_says_so(variants_file: Path) -> None:
    blackwell = gpu.Device(1, "NVIDIA B200", (10, 0))
    assert gpu.unsupported([blackwell], list(CU117)).endswith("no torchenv variant has code for it; a newer torch release is needed")


def stub_devices(monkeypatch: pytest.MonkeyPatch, devices: list[gpu.Device], compiled: tuple[str, ...] = CU117) -> None:
    monkeypatch.setattr(gpu, "visible_devices", lambda: devices)
    monkeypatch.setattr(gpu, "compiled_archs", lambda: list(compiled))


def test_train_refuses_cuda_on_a_gpu_without_code_before_it_starts(
    variants_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_devices(monkeypatch, [H200])
    out = variants_file.parent / "out"
    assert train.main(["--device", "cuda", "--out", str(out)]) == train.EXIT_GPU_UNSUPPORTED
    assert "use the cu118 or cu121 variants" in capsys.readouterr().err
    assert not out.exists()


def test_train_auto_falls_back_to_the_cpu_on_such_a_gpu_and_says_why(
    variants_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub_devices(monkeypatch, [H200])
    assert train.pick_device("auto") == "cpu"
    assert "training on the CPU: GPU 0 (NVIDIA H200" in capsys.readouterr().err


def test_more_nccl_processes_than_gpus_are_refused_before_torchrun_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stub_devices(monkeypatch, [RTX_4090])
    monkeypatch.setattr(train.distributed, "launch", lambda *args: pytest.fail("torchrun was started"))
    assert train.main(["--nproc", "2", "--out", str(tmp_path)]) == train.EXIT_DEVICE_UNAVAILABLE
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--nproc 2 on cuda needs 2 GPUs (NCCL: one process per GPU), 1 visible; use --nproc 1 or --device cpu (gloo)" in error
    assert train.pick_device("cuda", 1) == "cuda" and train.pick_device("cpu", 2) == "cpu"
