"""The matrix loader: the shipped file is valid, and every kind of bad entry gets one
line that names the problem and the nearest valid choice."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from torchenv.errors import TorchenvError
from torchenv.model.matrix import DEFAULT_MATRIX, load_matrix


def test_shipped_matrix_has_the_five_variants() -> None:
    matrix = load_matrix(DEFAULT_MATRIX)
    assert list(matrix.variants) == ["cpu", "cu117", "cu117-py39", "cu118", "cu121"]
    assert matrix.default_variant == "cu117"
    cu121 = matrix.get("cu121")
    assert (cu121.torch, cu121.torchvision, cu121.torchaudio, cu121.cuda) == ("2.1.2", "0.16.2", "2.1.2", "12.1")
    assert cu121.min_driver == "525.60.13"
    assert matrix.get("cu117").min_driver == "450.80.02"
    assert matrix.get("cpu").min_driver is None
    assert {v.python for v in matrix.variants.values()} == {"3.9", "3.11"}
    assert {v.base for v in matrix.variants.values()} == {"mmdebstrap:bookworm", "mmdebstrap:bullseye"}
    # The torch 2.0 variant that compiles: cu117's torch on Debian 11's Python 3.9.
    py39 = matrix.get("cu117-py39")
    assert (py39.torch, py39.cuda, py39.python, py39.debian_suite) == ("2.0.1", "11.7", "3.9", "bullseye")


def test_defaults_apply_unless_a_variant_overrides(shipped_matrix: dict[str, Any], write_matrix) -> None:
    shipped_matrix["variants"]["cu117"]["python"] = "3.10"
    shipped_matrix["variants"]["cu117"]["base"] = PINNED
    matrix = load_matrix(write_matrix(shipped_matrix))
    assert matrix.get("cu117").python == "3.10"
    assert matrix.get("cu121").python == "3.11"


def test_unknown_variant_names_the_nearest() -> None:
    with pytest.raises(TorchenvError, match=r"unknown variant 'cu999'; nearest: cu121 \(variants: cpu, cu117, cu117-py39, cu118, cu121"):
        load_matrix().get("cu999")


def mutate(matrix: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(matrix)
    *parents, last = path.split(".")
    table = data
    for key in parents:
        table = table[key]
    if value is DELETE:
        del table[last]
    else:
        table[last] = value
    return data


DELETE = object()
PINNED = "python:3.10-slim-bookworm@sha256:" + "0" * 64

BAD_ENTRIES = [
    ("variants.cu117.torhc", "2.0.1", r"\[variants.cu117\]: unknown key 'torhc'; nearest: torch"),
    ("defaults.pyton", "3.11", r"\[defaults\]: unknown key 'pyton'; nearest: python"),
    ("colour", "blue", r"top level: unknown key 'colour'"),
    ("variants.cu121.cuda", DELETE, r"\[variants.cu121\]: missing key cuda; add e.g. cuda = \"11.7\""),
    ("defaults.python", DELETE, r"\[variants.cpu\]: missing key python"),
    ("default_variant", DELETE, r"missing key default_variant"),
    ("variants.cu117.torch", 2.0, r"torch must be a string like \"2.0.1\", got float 2.0"),
    ("variants.cu117.cuda", 11.7, r"cuda must be a string like \"11.7\", got float 11.7"),
    ("variants.cu117", "cu117", r"\[variants.cu117\] must be a table, got string"),
    (
        "variants.cu121.torch",
        "2.0.1",
        r"torch 2.0.1 was never built for CUDA 12.1 \(its builds: CPU-only, CUDA 11.7, CUDA 11.8\); "
        r"nearest: cuda = \"11.8\", or torch 2.1.2 for CUDA 12.1",
    ),
    ("variants.cu117.cuda", "12.1", r"torch 2.0.1 was never built for CUDA 12.1"),
    ("variants.cu117.torch", "2.0.7", r"torch 2.0.7 is not a release torchenv knows; nearest: 2.0.1"),
    ("variants.cu117.torchvision", "0.16.2", r"torchvision 0.16.2 does not belong with torch 2.0.1; use torchvision = \"0.15.2\""),
    ("variants.cu118.torchaudio", "2.0.2", r"torchaudio 2.0.2 does not belong with torch 2.0.1\+cu118; use torchaudio = \"2.0.2\+cu118\""),
    ("variants.cu117.python", "3.12", r"Python 3.12 is outside torch 2.0.1's range 3.8-3.11; nearest: python = \"3.11\""),
    ("variants.cu121.python", "3.7", r"Python 3.7 is outside torch 2.1.2's range 3.8-3.11; nearest: python = \"3.8\""),
    ("variants.cu117.python", "three", r"python \"three\" is not of the form \"3.N\""),
    ("variants.cu117.python", "3.10", r"Debian bookworm ships Python 3.11, not 3.10; use python = \"3.11\""),
    ("variants.cu117.base", "mmdebstrap:bookwrom", r"unknown Debian suite; nearest: \"mmdebstrap:bookworm\""),
    (
        "variants.cu118.wheel_source",
        "pypi",
        r"PyPI serves torch 2.0.1 for linux/amd64 only as the CUDA 11.7 build; for CUDA 11.8 use wheel_source = "
        r"\"pytorch-cu118\"",
    ),
    ("variants.cu118.wheel_source", "pytorch-cu117", r"does not serve the CUDA 11.8 build; use wheel_source = \"pytorch-cu118\""),
    ("variants.cu118.wheel_source", "conda", r"unknown wheel_source \"conda\"; use \"pypi\" or \"pytorch-cu118\""),
    ("variants.cu118.torch", "2.0.1", r"names its wheel torch 2.0.1\+cu118; use torch = \"2.0.1\+cu118\""),
    ("variants.cpu.cuda", "11.8", r"does not serve the CUDA 11.8 build"),
    ("default_variant", "cu999", r"default_variant 'cu999' is not a variant; nearest: cu121"),
    ("variants", {}, r"no \[variants.NAME\] tables"),
    # Platforms: each one's wheels are checked against what PyTorch built for it.
    ("variants.cu117.platforms", ["linux/amd64", "linux/arm64"], r"\[variants.cu117\] on linux/arm64: PyTorch 2.0.1 has no CUDA build"),
    ("variants.cpu.platforms", ["linux/arm"], r"platform \"linux/arm\" is not one torchenv builds; nearest: \"linux/arm64\""),
    ("variants.cpu.platforms", "linux/arm64", r"platforms must be a list of strings like \[\"linux/amd64\"\], got string"),
    ("variants.cpu.platforms", ["linux/arm64", "linux/arm64"], r"platforms lists a platform twice"),
    ("variants.cpu.platforms", ["linux/amd64"], r"per_platform.\"linux/arm64\" is not one of its platforms \(linux/amd64\); add it"),
    ("variants.cpu.per_platform.linux/arm64.cuda", "11.7", r"per_platform.\"linux/arm64\": unknown key 'cuda'; nearest: "),
    (
        "variants.cpu.per_platform.linux/arm64.torch",
        "2.0.1+cpu",
        r"\[variants.cpu\] on linux/arm64: PyPI names its torch 2.0.1 without a local label; use torch = \"2.0.1\"",
    ),
    (
        "variants.cpu.per_platform.linux/arm64.wheel_source",
        "pytorch-cu118",
        r"on linux/arm64: wheel_source \"pytorch-cu118\" does not serve the CPU-only build",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_ENTRIES, ids=[entry[0] + "=" + str(entry[1])[:12] for entry in BAD_ENTRIES])
def test_bad_entries_get_one_line_with_the_fix(shipped_matrix, write_matrix, path: str, value: Any, message: str) -> None:
    with pytest.raises(TorchenvError, match=message) as caught:
        load_matrix(write_matrix(mutate(shipped_matrix, path, value)))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["CU 117", "cu117-", "-cu117", "c" * 41])
def test_bad_variant_name(shipped_matrix, write_matrix, name: str) -> None:
    """Each would be refused somewhere later (an image tag, a Kubernetes label value of 63
    at most, a letter or digit at each end): here, in one line."""
    shipped_matrix["variants"][name] = shipped_matrix["variants"].pop("cu117")
    shipped_matrix["default_variant"] = name
    with pytest.raises(TorchenvError, match="a variant name must be lowercase"):
        load_matrix(write_matrix(shipped_matrix))


def test_syntax_error_names_file_and_line(write_matrix) -> None:
    path = write_matrix('default_variant = "cu117"\n\n[variants.cu117]\ntorch = "2.0.1\n')
    with pytest.raises(TorchenvError, match=r"matrix.toml: TOML syntax error: .*\(at line 4, column \d+\)"):
        load_matrix(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(TorchenvError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.toml")


def test_upstream_base_needs_no_debian_python(shipped_matrix, write_matrix) -> None:
    shipped_matrix["variants"]["cu117"]["base"] = PINNED
    shipped_matrix["variants"]["cu117"]["python"] = "3.10"
    variant = load_matrix(write_matrix(shipped_matrix)).get("cu117")
    assert variant.debian_suite is None and variant.base == PINNED


def test_upstream_base_by_tag_alone_is_refused_unless_allowed(shipped_matrix, write_matrix) -> None:
    shipped_matrix["variants"]["cu117"]["base"] = "python:3.11-slim-bookworm"
    with pytest.raises(TorchenvError, match=r'base "python:3.11-slim-bookworm" is not pinned by digest.*allow_unpinned_base = true'):
        load_matrix(write_matrix(shipped_matrix))
    shipped_matrix["variants"]["cu117"]["allow_unpinned_base"] = True
    assert load_matrix(write_matrix(shipped_matrix)).get("cu117").allow_unpinned_base is True
    shipped_matrix["variants"]["cu117"]["allow_unpinned_base"] = "yes"
    with pytest.raises(TorchenvError, match="allow_unpinned_base must be true or false, got string 'yes'"):
        load_matrix(write_matrix(shipped_matrix))


def test_upstream_base_must_be_a_reference(shipped_matrix, write_matrix) -> None:
    shipped_matrix["variants"]["cu117"]["base"] = "my base"
    with pytest.raises(TorchenvError, match="is not an image reference"):
        load_matrix(write_matrix(shipped_matrix))


def test_a_variant_is_entered_once_per_platform() -> None:
    matrix = load_matrix()
    arm64 = matrix.get("cpu", "linux/arm64")
    assert (arm64.torch, arm64.wheel_source, arm64.cuda, arm64.build_name) == ("2.0.1", "pypi", "none", "cpu-arm64")
    assert matrix.get("cpu", "linux/amd64").torch == "2.0.1+cpu"
    assert arm64.requirements == [
        "torch==2.0.1",
        "torchvision==0.15.2",
        "torchaudio==2.0.2",
        "numpy<2",
        "setuptools>=64,<70",
        "wheel",
        "ninja",
    ]
    assert [v.build_name for v in matrix.every_build()] == ["cpu", "cpu-arm64", "cu117", "cu117-py39", "cu118", "cu121"]
    with pytest.raises(TorchenvError, match=r"variant cu117 is not built for linux/arm64; its platforms: linux/amd64"):
        matrix.get("cu117", "linux/arm64")
    assert [v.name for v in matrix.select(None, all_variants=True, platform="linux/arm64")] == ["cpu"]
