"""Fixtures for the image tests: each selected variant is built once by the same code as
`invoke build`, and checked from inside a real, tracked container with testinfra."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import testinfra

from torchenv import engine, testrecords, wheels
from torchenv.build import build_variant
from torchenv.errors import TorchenvError
from torchenv.matrix import Matrix, Variant, load_matrix
from torchenv.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def matrix(settings: Settings) -> Matrix:
    return load_matrix(settings.matrix)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        matrix = load_matrix(Settings.load().matrix)
        chosen = metafunc.config.getoption("--variants")
        names = [name.strip() for name in chosen.split(",") if name.strip()] if chosen else list(matrix.variants)
        for name in names:
            matrix.get(name)  # an unknown name fails here, in one line
        # Every platform of each variant: the arm64 cpu image runs emulated on an amd64 host.
        builds = [variant for variant in matrix.every_build() if variant.name in names]
        metafunc.parametrize("variant", builds, ids=[variant.build_name for variant in builds], scope="session")


@pytest.fixture(scope="session")
def image(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    """The variant's tag, built (or found in the build cache) through torchenv.build."""
    try:
        wheels.require_reachable(variant, settings)
    except TorchenvError as error:
        pytest.skip(f"cannot build {variant.name} here: {error}")
    return build_variant(variant, matrix, settings)


@dataclass
class TrackedContainer:
    """A container that is always removed, whatever the test did."""

    id: str
    host: testinfra.host.Host

    def python(self, code: str) -> str:
        return self.host.check_output(f"python -c '{code}'")


@pytest.fixture(scope="session")
def container(image: str, variant: Variant) -> Iterator[TrackedContainer]:
    name = f"torchenv-test-{uuid.uuid4().hex[:8]}"
    extra = ["--detach", "--name", name, "--label", "io.torchenv.test=1"]
    if gpus := os.environ.get("TORCHENV_TEST_GPUS"):  # the GPU CI job: TORCHENV_TEST_GPUS=all
        extra += ["--gpus", gpus]
    args = engine.run_args(image, ["sleep", "infinity"], extra=extra, platform=variant.platform)
    args.remove("--rm")
    container_id = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield TrackedContainer(container_id, testinfra.get_host(f"docker://{container_id}"))
    finally:
        subprocess.run(["docker", "rm", "--force", container_id], capture_output=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Each image test's outcome goes into the image's test record (`invoke push` needs one
    with passes and no failure)."""
    report = yield
    image_tag = getattr(item, "funcargs", {}).get("image")
    if image_tag and (report.when == "call" or report.failed):
        image_id = engine.image_id(image_tag)
        if image_id:
            testrecords.add_result(image_id, Settings.load(), item.nodeid, passed=report.passed or report.skipped)
    return report
