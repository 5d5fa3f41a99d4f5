"""The command surface, run for real: bad requests end in one line and a non-zero exit,
and no image is tagged, changed or removed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.model.settings import PYTORCH_INDEX


def run_invoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    invoke = Path(sys.executable).with_name("invoke")
    return subprocess.run([str(invoke), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


def image_state() -> set[str]:
    return engine.get().references()


CASES = [
    (["build", "--variant", "cu999"], {}, r"^torchenv: error: unknown variant 'cu999'; nearest: cu121 "),
    (
        ["build", "--variant", "cu118"],
        {"TORCHENV_PYTORCH_INDEX": "http://127.0.0.1:9/whl"},
        r"^torchenv: error: variant cu118: the PyTorch cu118 index could not be reached at http://127.0.0.1:9/whl/cu118/torch/ .*mirror",
    ),
    (
        # The network breaks: every request goes to a proxy that is not there.
        ["build", "--variant", "cu117"],
        {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""},
        r"^torchenv: error: variant cu117: PyPI could not be reached at \S+/torch/ \(.*\); check the network",
    ),
    (["verify", "--variant", "cu999"], {}, r"^torchenv: error: unknown variant 'cu999'"),
    (
        ["build", "--variant", "cu117", "--platform", "linux/arm64"],
        {},
        r"^torchenv: error: variant cu117 is not built for linux/arm64; its platforms: linux/amd64",
    ),
    (
        ["verify", "--variant", "cpu", "--platform", "linux/s390x"],
        {},
        r"^torchenv: error: variant cpu is not built for linux/s390x; its platforms: linux/amd64, linux/arm64",
    ),
    (["test", "--variant", "cu999"], {}, r"^torchenv: error: unknown variant 'cu999'"),
    (
        # images/digests.json records no push in a clean checkout.
        ["slurm", "--script", "pyxis"],
        {},
        r"^torchenv: error: no pushed cu117 is recorded in digests.json; say which image the cluster pulls: --image REGISTRY/",
    ),
    (["slurm", "--script", "lsf", "--image", "x"], {}, r"^torchenv: error: no Slurm template 'lsf'; choose one of apptainer, pyxis$"),
    (
        ["manifests", "--kind", "mpijob", "--image", "x"],
        {},
        r"^torchenv: error: no manifest kind 'mpijob'; choose one of indexed-job, pytorchjob, trainjob, rayjob$",
    ),
    (
        ["manifests", "--kind", "rayjob"],
        {},
        r"^torchenv: error: --kind rayjob: the pods run the raytrain project's image; build and push it, then pass --image REF$",
    ),
    (
        ["manifests", "--image", "x", "--shm-size", "8 GB"],
        {},
        r"^torchenv: error: --shm-size '8 GB' is not a Kubernetes quantity; write it like 8Gi or 512Mi$",
    ),
    (
        ["build", "--variant", "cu117"],
        {"TORCHENV_MATRIX": "/nonexistent/matrix.toml"},
        r"^torchenv: error: /nonexistent/matrix.toml: matrix file not found",
    ),
    (
        ["build", "--variant", "cu117"],
        {"TORCHENV_CA_BUNDLE": "/nonexistent/ca.pem"},
        r"^torchenv: error: CA bundle /nonexistent/ca.pem .* does not exist",
    ),
    (
        ["lock", "--variant", "cpu", "--platform", "linux/amd64"],
        {"TORCHENV_PYTORCH_INDEX": "http://127.0.0.1:9/whl"},
        r"^torchenv: error: variant cpu: the PyTorch cpu index could not be reached at http://127.0.0.1:9/whl/cpu/torch/",
    ),
    (
        # No lock, and nowhere to write the one the build would make first.
        ["build", "--variant", "cu117"],
        {"TORCHENV_LOCK_DIR": "/proc/torchenv-locks"},
        r"^torchenv: error: cannot write the lock of cu117 into /proc/torchenv-locks \(.*\); point TORCHENV_LOCK_DIR at a writable folder",
    ),
    (
        ["build", "--variant", "cu117"],
        {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        r"^torchenv: error: the Docker daemon does not answer.*start it",
    ),
    (
        ["build", "--variant", "cu117"],
        {"TORCHENV_MIN_FREE_GB": "1000000"},
        r"^torchenv: error: only [\d.]+ GB free on \S+ \(Docker's data root\); a build of cu117 needs about 1000000 GB",
    ),
    (
        ["build", "--variant", "cu117"],
        {"TORCHENV_MIN_FREE_GB": "lots"},
        r"^torchenv: error: setting min_free_gb must be a number, got 'lots'",
    ),
    (["push", "--variant", "cu117"], {}, r"^torchenv: error: say where to push: invoke push --registry"),
    (
        ["push", "--variant", "cu117", "--registry", "127.0.0.1:1", "--compression", "xz"],
        {},
        r"^torchenv: error: unknown layer compression 'xz'; use --compression zstd \(Docker 23 and later\) or gzip",
    ),
    (
        ["pull", "--variant", "cu117"],
        {"TORCHENV_DIGESTS_FILE": "/nonexistent/digests.json"},
        r"^torchenv: error: no pushed image of cu117 is recorded",
    ),
]


def pytorch_index_answers(channel: str) -> bool:
    try:
        urllib.request.urlopen(f"{PYTORCH_INDEX}/{channel}/torch/", timeout=15).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("variant", ["cpu", "cu118"])
def test_a_pytorch_index_variant_needs_no_setting(variant: str, tmp_path: Path) -> None:
    """`invoke build` as a new user types it, with nothing set. Where the PyTorch index
    answers, the build gets past it and locks the variant (it then stops at a disk check
    set out of reach); where it does not (this project's machines), it fails in one line
    naming the address it tried. Either way nothing is tagged."""
    channel = variant
    before = image_state()
    environment = {"TORCHENV_LOCK_DIR": str(tmp_path), "TORCHENV_MIN_FREE_GB": "1000000"}
    result = run_invoke("build", "--variant", variant, "--platform", "linux/amd64", **environment)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    if pytorch_index_answers(channel):
        assert re.search(rf"^torchenv: error: only [\d.]+ GB free .*a build of {variant} needs about 1000000 GB", lines[0]), lines[0]
        assert f"# wheel-source: pytorch index ({channel})" in (tmp_path / f"{variant}.txt").read_text()
    else:
        tried = re.escape(f"{PYTORCH_INDEX}/{channel}/torch/")
        expected = rf"^torchenv: error: variant {variant}: the PyTorch {channel} index could not be reached at {tried} "
        assert re.search(expected, lines[0]), lines[0]
        assert not any(tmp_path.iterdir())
    assert image_state() == before


@pytest.mark.parametrize(("args", "env", "message"), CASES, ids=[" ".join(case[0]) + " " + " ".join(case[1]) for case in CASES])
def test_bad_request_is_one_line_and_tags_nothing(args: list[str], env: dict[str, str], message: str) -> None:
    before = image_state()
    result = run_invoke(*args, **env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert image_state() == before


def test_list_prints_the_matrix() -> None:
    result = run_invoke("list")
    assert result.returncode == 0
    rows = result.stdout.splitlines()
    assert rows[0].split()[:4] == ["variant", "platform", "torch", "torchvision"]
    assert [row.split()[:2] for row in rows[2:]] == [
        ["cpu", "linux/amd64"],
        ["cpu", "linux/arm64"],
        ["cu117", "(default)"],
        ["cu117-py39", "linux/amd64"],
        ["cu118", "linux/amd64"],
        ["cu121", "linux/amd64"],
    ]
    assert "cu117 (default)" in result.stdout and "525.60.13" in result.stdout


def test_debug_flag_shows_the_traceback() -> None:
    result = run_invoke("--debug", "build", "--variant", "cu999")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "TorchenvError: unknown variant 'cu999'" in result.stderr
