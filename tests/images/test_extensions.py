"""torch.utils.cpp_extension in each image, as a user's code meets it: the build tools
every torch-2.0-era package assumes (pkg_resources, wheel, ninja), a C++ op compiled with
load_inline and run, as user 1000 and as an arbitrary UID on a read-only root, and the one
line that a noexec /tmp gets instead of a loader error."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from packaging.version import Version

from torchenv.engine import RunOptions
from torchenv.locking.locks import locked_packages, read_lock
from torchenv.model.matrix import Variant

from .conftest import TrackedContainer, compiles, tracked

# A small op with an answer that cannot come out right by accident: a + 2 * b, elementwise.
LOAD_INLINE = r"""
import json, os, sys, torch
from torch.utils.cpp_extension import load_inline
source = "torch::Tensor axpy2(torch::Tensor a, torch::Tensor b) { return a + 2 * b; }"
module = load_inline(name="torchenv_axpy2", cpp_sources=source, functions=["axpy2"], verbose=False)
a, b = torch.arange(5.0), torch.full((5,), 3.0)
print(json.dumps({"result": module.axpy2(a, b).tolist(), "file": module.__file__}))
"""

# Docker's default options for a bare `--tmpfs /tmp`: noexec among them.
NOEXEC_TMP = {"/tmp": "mode=1777"}
FIX = "--tmpfs /tmp:exec"


def run_load_inline(container: TrackedContainer) -> dict[str, object]:
    container.host.check_output("cat > /tmp/load_inline.py <<'EOF'\n" + LOAD_INLINE + "\nEOF")
    result = container.host.run("python /tmp/load_inline.py")
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_build_tools_torch_era_packages_assume_are_there(container: TrackedContainer, variant: Variant) -> None:
    code = (
        "import importlib.metadata as m, json, shutil, pkg_resources, torch.utils.cpp_extension; "
        'print(json.dumps({n: m.version(n) for n in ("setuptools", "wheel", "ninja")} | {"ninja_on_path": shutil.which("ninja")}))'
    )
    found = json.loads(container.python(code))
    # setuptools 70 dropped what torch 2.0/2.1's cpp_extension imports from pkg_resources.
    assert Version(found["setuptools"]) < Version("70"), found
    assert found["ninja_on_path"] == "/opt/venv/bin/ninja"
    lock = read_lock(variant)
    assert lock is not None
    pins = locked_packages(lock)
    assert {name: pins.get(name) for name in ("setuptools", "wheel", "ninja")} == {
        name: found[name] for name in ("setuptools", "wheel", "ninja")
    }


def test_load_inline_builds_and_runs_a_cpp_op_as_user_1000(container: TrackedContainer) -> None:
    assert container.host.check_output("id -u") == "1000"
    found = run_load_inline(container)
    assert found["result"] == [6.0, 7.0, 8.0, 9.0, 10.0]
    # Built where the image points cpp_extension, on the exec tmpfs.
    assert str(found["file"]).startswith("/tmp/torch_extensions/"), found


@pytest.fixture(scope="module")
def arbitrary_uid_read_only(image: str, variant: Variant) -> Iterator[TrackedContainer]:
    """An arbitrary UID in group 0 without a passwd entry, read-only root, /tmp writable."""
    with tracked(image, RunOptions(platform=variant.platform, user="23456:0")) as found:
        yield found


def test_load_inline_as_an_arbitrary_uid_on_a_read_only_root(arbitrary_uid_read_only: TrackedContainer) -> None:
    host = arbitrary_uid_read_only.host
    assert host.check_output("id -u") == "23456"
    assert host.run("touch /home/torchenv/x").rc != 0, "the root filesystem should be read-only"
    assert run_load_inline(arbitrary_uid_read_only)["result"] == [6.0, 7.0, 8.0, 9.0, 10.0]


@pytest.fixture(scope="module")
def noexec_tmp(image: str, variant: Variant) -> Iterator[TrackedContainer]:
    """As user 4242, read-only, with Docker's default (noexec) tmpfs on /tmp: no writable
    place can load compiled code."""
    with tracked(image, RunOptions(platform=variant.platform, user="4242:0", tmpfs=NOEXEC_TMP)) as found:
        yield found


def test_noexec_tmp_is_what_the_container_has(noexec_tmp: TrackedContainer) -> None:
    """Read from the kernel's mount table, not from torchenv's own check."""
    mounts = [line.split() for line in noexec_tmp.host.file("/proc/mounts").content_string.splitlines()]
    options = next(fields[3] for fields in mounts if fields[1] == "/tmp")
    assert "noexec" in options.split(","), options


def test_verify_names_the_fix_where_nothing_can_load_compiled_code(noexec_tmp: TrackedContainer, variant: Variant) -> None:
    result = noexec_tmp.host.run("verify --json")
    assert result.rc == 1, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["extensions"]["status"] == "fail" and FIX in checks["extensions"]["detail"], checks["extensions"]
    if compiles(variant):
        assert checks["torch.compile"]["status"] == "fail" and FIX in checks["torch.compile"]["detail"]
    else:
        assert checks["torch.compile"]["status"] == "skip"
    assert "\n" not in checks["extensions"]["detail"]


def test_train_compile_refuses_in_one_line_where_nothing_can_load_compiled_code(noexec_tmp: TrackedContainer, variant: Variant) -> None:
    result = noexec_tmp.host.run("train --epochs 1 --compile --out /tmp/noexec")
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    if compiles(variant):
        assert result.rc == 12, result.stdout + result.stderr
        assert len(lines) == 1 and lines[0].startswith("train: error: --compile: ") and FIX in lines[0], lines
    else:
        assert result.rc == 2 and len(lines) == 1 and "does not support torch.compile" in lines[0], lines


def test_a_users_extension_load_refuses_in_one_line_where_nothing_can_load_it(noexec_tmp: TrackedContainer) -> None:
    noexec_tmp.host.check_output("cat > /tmp/load_inline.py <<'EOF'\n" + LOAD_INLINE + "\nEOF")
    result = noexec_tmp.host.run("python /tmp/load_inline.py")
    assert result.rc == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchenv: error: ") and FIX in lines[0], result.stderr
