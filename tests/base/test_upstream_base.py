"""A variant may name an upstream base image instead of the mmdebstrap one. No registry
is reachable here, so the "upstream" image is made locally from the Debian base with the
user and g++ taken out; the Dockerfile's base stage must put them back."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.base import ensure_base
from torchenv.settings import Settings

STRIP = "RUN sed -i '/^torchenv:/d' /etc/passwd /etc/group && rm -rf /home/torchenv && apt-get remove -y -qq g++ >/dev/null\n"


@pytest.fixture(scope="module")
def upstream_image() -> Iterator[str]:
    engine.require_engine()
    base = ensure_base("bookworm", Settings.load())
    name = f"torchenv-test-upstream:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "build", "--quiet", "--tag", name, "-"], input=f"FROM {base}\n{STRIP}", text=True, check=True, capture_output=True
    )
    yield name
    subprocess.run(["docker", "image", "rm", "--force", name], capture_output=True)


def build_base_stage(base_image: str, python: str, tag: str) -> subprocess.CompletedProcess[str]:
    command = ["docker", "buildx", "build", "--file", "docker/Dockerfile", "--target", "torchenv-base", "--progress", "plain", "--tag", tag]
    command += [
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--build-arg",
        f"PYTHON_VERSION={python}",
        "--build-arg",
        "BASE_EPOCH=1700000000",
        ".",
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)


def test_upstream_base_gets_compilers_and_the_user(upstream_image: str) -> None:
    tag = f"torchenv-test-adapted:{uuid.uuid4().hex[:8]}"
    try:
        built = build_base_stage(upstream_image, "3.11", tag)
        assert built.returncode == 0, built.stderr[-2000:]
        probe = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "sh", "-c", "getent passwd 1000 | cut -d: -f1; g++ --version | head -1"],
            capture_output=True,
            text=True,
        )
        user, compiler = probe.stdout.splitlines()
        assert user == "torchenv"
        assert compiler.startswith("g++")
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True)


def test_upstream_base_with_another_python_is_refused(upstream_image: str) -> None:
    built = build_base_stage(upstream_image, "3.10", f"torchenv-test-refused:{uuid.uuid4().hex[:8]}")
    assert built.returncode != 0
    assert "torchenv: error: the base image's python3 is 3.11, the variant wants 3.10" in built.stderr
