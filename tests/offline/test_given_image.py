"""The image tests, run by a user as pytest runs them: an existing image given with
--image is tested as it is, with no index reachable; a variant that must be built from a
wheel source that does not answer fails, it does not skip. (After tests/images, which
built the image.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from torchenv import PROJECT_ROOT
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline.build import image_tag

pytestmark = pytest.mark.needs_variants("cu117")

# Every HTTP(S) request of the test process goes to a proxy that is not there.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
TESTS = [
    "tests/images/test_runtime.py::test_python_is_the_matrix_version",
    "tests/images/test_runtime.py::test_package_versions_are_the_matrix_versions",
]


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
        timeout=900,
    )


def test_an_existing_image_is_tested_offline() -> None:
    tag = image_tag(load_matrix().get("cu117"), Settings.load())
    result = pytest_run(*TESTS, f"--image={tag}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
    assert f"cu117@{tag}" in result.stdout  # the test ids name the image given


def test_a_variant_whose_wheel_source_does_not_answer_fails_rather_than_skips() -> None:
    result = pytest_run(*TESTS, "--variants=cu117")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "cannot build cu117: variant cu117: PyPI could not be reached" in result.stdout, result.stdout[-3000:]
    assert "skipped" not in result.stdout
