"""Inside each real image: versions as the matrix says, CUDA build, cuDNN, the demo,
the non-root user, a clean dependency set, and no build secrets or caches left behind."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime

import pytest

from torchenv import platforms
from torchenv.locks import read_lock
from torchenv.matrix import Variant
from torchenv.settings import Settings
from torchenv.tags import short_commit

from .conftest import TrackedContainer

# Containers are started without GPUs unless the GPU CI job asks for them.
GPUS_REQUESTED = bool(os.environ.get("TORCHENV_TEST_GPUS"))


def test_python_is_the_matrix_version(container: TrackedContainer, variant: Variant) -> None:
    assert container.python('import sys; print("%d.%d" % sys.version_info[:2])') == variant.python


def test_package_versions_are_the_matrix_versions(container: TrackedContainer, variant: Variant) -> None:
    code = 'import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in ("torch", "torchvision", "torchaudio")}))'
    assert json.loads(container.python(code)) == {
        "torch": variant.torch,
        "torchvision": variant.torchvision,
        "torchaudio": variant.torchaudio,
    }


def test_torch_cuda_build_is_the_variants(container: TrackedContainer, variant: Variant) -> None:
    found = container.python("import torch; print(torch.version.cuda)")
    assert found == ("None" if variant.cuda == "none" else variant.cuda)


def test_cuda_available_only_with_a_visible_gpu(container: TrackedContainer) -> None:
    found = container.python("import torch; print(torch.cuda.is_available())")
    assert found == str(GPUS_REQUESTED)


def test_cudnn_loads(container: TrackedContainer, variant: Variant) -> None:
    version = int(container.python("import torch; print(torch.backends.cudnn.version() or 0)"))
    if variant.cuda == "none":
        assert version == 0
    else:
        assert version >= 8000, f"cuDNN did not load (version {version})"


def test_numpy_is_1x_and_the_bridge_works(container: TrackedContainer) -> None:
    code = "import numpy, torch; a = numpy.arange(3.0); print(numpy.__version__, torch.from_numpy(a).mul(2).numpy().tolist())"
    numpy_version, result = container.python(code).split(" ", 1)
    assert numpy_version.startswith("1.")
    assert result == "[0.0, 2.0, 4.0]"


def test_verify_passes_with_json_report(container: TrackedContainer, variant: Variant) -> None:
    result = container.host.run("verify --json")
    report = json.loads(result.stdout)
    assert result.rc == 0, result.stdout + result.stderr
    assert report["passed"] is True and report["variant"] == variant.name
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["matmul"] == statuses["packages"] == statuses["cuda build"] == "ok"
    release = tuple(int(part) for part in variant.torch_release.split("."))
    python = tuple(int(part) for part in variant.python.split("."))
    # torch 2.0 cannot compile on Python 3.11; verify says so instead of failing.
    assert statuses["torch.compile"] == ("skip" if release < (2, 1) and python >= (3, 11) else "ok")


def test_train_loss_falls_and_writes_metrics(container: TrackedContainer) -> None:
    result = container.host.run("train --epochs 4 --out /tmp/demo")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = json.loads(container.host.file("/tmp/demo/metrics.json").content_string)
    assert metrics["final_loss"] < 0.5 * metrics["first_loss"]
    assert metrics["device"] == ("cuda" if GPUS_REQUESTED else "cpu")
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3, 4]
    assert container.host.file("/tmp/demo/checkpoint.pt").size > 0


def test_runs_as_the_non_root_user(container: TrackedContainer, image: str) -> None:
    assert container.host.check_output("id -u") == "1000"
    configured = subprocess.run(["docker", "image", "inspect", "--format", "{{.Config.User}}", image], capture_output=True, text=True)
    assert configured.stdout.strip() == "1000:1000"


def test_pip_check_is_clean(container: TrackedContainer) -> None:
    result = container.host.run("python -m pip check")
    assert result.rc == 0, result.stdout


def test_no_pip_cache_or_build_secret_in_the_image(container: TrackedContainer) -> None:
    leftovers = container.host.run(
        "find / -xdev \\( -path '*/.cache/pip' -o -path '/run/secrets/*' -o -name 'pip-*.log' \\) -print 2>/dev/null"
    )
    assert leftovers.stdout.strip() == ""


def test_labels_name_the_lock_and_the_matrix(image: str, variant: Variant, settings: Settings) -> None:
    labels = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image], capture_output=True, text=True)
    found = json.loads(labels.stdout)
    lock = read_lock(variant, settings.lock_dir)
    assert lock is not None, f"{variant.name} has no lock"
    assert found["io.torchenv.lock-sha256"] == hashlib.sha256(lock.path.read_bytes()).hexdigest()
    assert (found["io.torchenv.variant"], found["io.torchenv.torch"], found["io.torchenv.cuda"]) == (
        variant.name,
        variant.torch,
        variant.cuda,
    )
    assert found["io.torchenv.python"] == variant.python and found["org.opencontainers.image.revision"]


def test_image_time_comes_from_the_lock(image: str, variant: Variant, settings: Settings) -> None:
    created = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Created}}", image], capture_output=True, text=True
    ).stdout.strip()
    lock = read_lock(variant, settings.lock_dir)
    assert lock is not None
    assert datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() == lock.source_date_epoch


def test_image_records_the_base_packages(container: TrackedContainer, variant: Variant) -> None:
    if variant.debian_suite is None:
        pytest.skip("an upstream base has no mmdebstrap package list")
    lines = container.host.file("/usr/share/torchenv/base-packages.txt").content_string.splitlines()
    names = {line.split()[0] for line in lines}
    assert {"python3.11", "g++-12", "ca-certificates", "libc6"} <= names
    assert all(len(line.split()) == 3 for line in lines)


def test_tags_are_computed_from_the_image(image: str, variant: Variant, matrix, settings: Settings) -> None:
    """<torch>-<variant>-py<python>-<commit> (on a clean tree), <torch>-<variant>, <variant>,
    latest for the default variant: all on the one image."""
    image_id = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True).stdout.strip()
    listed = subprocess.run(
        ["docker", "image", "ls", settings.image_name, "--format", "{{.Tag}} {{.ID}}", "--no-trunc"], capture_output=True, text=True
    ).stdout.split("\n")
    tags = {line.split()[0] for line in listed if line.strip() and line.split()[1] == image_id}
    torch, name = variant.torch.replace("+", "-"), variant.local_name
    assert {name, f"{torch}-{name}"} <= tags
    assert ("latest" in tags) == (name == matrix.default_variant)
    full = [tag for tag in tags if tag.startswith(f"{torch}-{name}-py{variant.python}-")]
    commit = short_commit()
    assert full == ([f"{torch}-{name}-py{variant.python}-{commit}"] if commit else []), tags


def test_image_is_for_the_variants_platform(image: str, variant: Variant, container: TrackedContainer) -> None:
    architecture = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image], capture_output=True, text=True
    ).stdout.strip()
    assert architecture == variant.platform
    machine = platforms.MACHINES[variant.platform]
    assert container.host.check_output("uname -m") == machine
    assert container.python("import platform; print(platform.machine())") == machine


def test_no_setuid_setgid_files(container: TrackedContainer) -> None:
    found = container.host.run("find / -xdev -type f -perm /6000 -print 2>/dev/null").stdout.split()
    assert found == [], f"setuid/setgid files: {found}"


def test_no_world_writable_directory_but_tmp(container: TrackedContainer) -> None:
    found = container.host.run("find / -xdev -type d -perm -0002 -print 2>/dev/null").stdout.split()
    assert found == ["/tmp"]
