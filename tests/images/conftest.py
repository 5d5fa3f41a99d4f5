"""Fixtures for the image tests: each selected variant is built once by the same code as
`invoke build` (or, with `--image REF`, an existing image is taken as it is), and checked
from inside a real, tracked container with testinfra."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import testinfra

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.locking import wheels
from torchenv.model.matrix import Matrix, Variant, load_matrix
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline import testrecords
from torchenv.pipeline.build import build_variant, image_tag

from .. import skips
from ..canaries import settings_with_test_ca
from ..conftest import platform_selected

# Containers are started without GPUs unless the GPU CI job asks for them.
GPUS = os.environ.get("TORCHENV_TEST_GPUS") or None


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The real settings, with a CA bundle that also holds a generated test CA: the
    CA-leak scan always has something of its own to look for."""
    return settings_with_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def matrix(settings: Settings) -> Matrix:
    return load_matrix(settings.matrix)


def compiles(variant: Variant) -> bool:
    """What PyTorch's release notes say: torch 2.0's dynamo refuses Python 3.11, torch 2.1 takes it."""
    return not (variant.torch_release.startswith("2.0.") and variant.python == "3.11")


@dataclass(frozen=True)
class ImageUnderTest:
    """A variant's build and, when given with --image, the image to test instead of a build."""

    variant: Variant
    reference: str | None = None
    # The project a given image holds on top of its variant (its label), if any.
    project: str | None = None

    @property
    def id(self) -> str:
        return self.variant.build_name + (f"@{self.reference}" if self.reference else "")


def given_images(config: pytest.Config, matrix: Matrix) -> list[ImageUnderTest]:
    """--image REF: each image's variant and platform come from the image itself (its labels)."""
    found = []
    for reference in config.getoption("--image") or []:
        facts = engine.get().image(reference)
        if facts is None:
            raise pytest.UsageError(f"--image {reference}: no such image in the engine; pull or build it first")
        name = facts.labels.get(Label.VARIANT)
        if not name:
            raise pytest.UsageError(f"--image {reference}: not a torchenv image (no {Label.VARIANT} label)")
        found.append(ImageUnderTest(matrix.get(name, facts.platform), reference, facts.labels.get(Label.PROJECT)))
    return found


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "under_test" not in metafunc.fixturenames:
        return
    matrix = load_matrix(Settings.load().matrix)
    under_test = given_images(metafunc.config, matrix)
    if not under_test:
        chosen = metafunc.config.getoption("--variants")
        names = [name.strip() for name in chosen.split(",") if name.strip()] if chosen else list(matrix.variants)
        for name in names:
            matrix.get(name)  # an unknown name fails here, in one line
        # Each variant on this host's platform; with --platforms all, on every platform of it
        # (the arm64 cpu image runs emulated on an amd64 host).
        under_test = [
            ImageUnderTest(variant)
            for variant in matrix.every_build()
            if variant.name in names and platform_selected(metafunc.config, variant.platform)
        ]
    metafunc.parametrize("under_test", under_test, ids=[entry.id for entry in under_test], scope="session")


def applies(item: pytest.Item) -> bool:
    """A test marked for CUDA variants (or for bases made here) has nothing to check in the
    others (one that needs a GPU, marker gpu, is left out without TORCHENV_TEST_GPUS by
    tests/conftest.py)."""
    callspec = getattr(item, "callspec", None)
    entry = callspec.params.get("under_test") if callspec else None
    if entry is None:
        return True
    if item.get_closest_marker("cuda_only") and not entry.variant.is_cuda:
        return False
    if item.get_closest_marker("variant_image") and entry.project:
        return False
    return not (item.get_closest_marker("mmdebstrap_base") and not entry.variant.debian_suite)


def repeats_a_torch_release(item: pytest.Item, first_per_release: dict[tuple[str, str, str], str]) -> bool:
    """A test marked one_per_torch runs on the first image selected of each torch release
    (and project); on the others it would run the same torchrun again."""
    callspec = getattr(item, "callspec", None)
    entry = callspec.params.get("under_test") if callspec else None
    if entry is None or not item.get_closest_marker("one_per_torch"):
        return False
    key = (entry.variant.torch_release, entry.variant.platform, str(entry.project))
    return first_per_release.setdefault(key, entry.id) != entry.id


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Such a test is deselected where it does not apply: a skip would not be a pass (and an
    image whose test record holds a skip is not pushed)."""
    first_per_release: dict[tuple[str, str, str], str] = {}
    dropped = [item for item in items if not applies(item) or repeats_a_torch_release(item, first_per_release)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


# The image each entry under test turned out to be (ImageUnderTest.id -> reference), once
# the image fixture made or found it: what each test's outcome is recorded against.
TESTED: dict[str, str] = {}


@pytest.fixture(scope="session")
def variant(under_test: ImageUnderTest) -> Variant:
    return under_test.variant


@pytest.fixture(scope="session")
def image(under_test: ImageUnderTest, matrix: Matrix, settings: Settings) -> str:
    """The image to test: the one given with --image, or the variant's tag, built (or found
    in the build cache) through torchenv.pipeline.build."""
    variant = under_test.variant
    if under_test.reference:
        TESTED[under_test.id] = under_test.reference
        return under_test.reference
    try:
        wheels.require_reachable(variant, settings)
    except TorchenvError as error:
        if variant.pytorch_channel is None or not settings.pytorch_index_is_default:
            pytest.fail(f"cannot build {variant.name}: {error}", pytrace=False)
        # The PyTorch index itself is out of reach (this machine's network): an image built
        # before is tested as it is; without one there is nothing to test.
        tag = image_tag(variant, settings)
        if engine.get().image_id(tag) is None:
            skips.unreachable(f"{error}; {tag} is absent (tests/mirror walks this path against a mirror on 127.0.0.1)")
        TESTED[under_test.id] = tag
        return tag
    TESTED[under_test.id] = build_variant(variant, matrix, settings)
    return TESTED[under_test.id]


@dataclass
class TrackedContainer:
    """A container that is always removed, whatever the test did. `host` runs commands as
    the image's user, `root` as root (for looking through the whole filesystem)."""

    id: str
    host: testinfra.host.Host
    root: testinfra.host.Host

    def python(self, code: str) -> str:
        return self.host.check_output(f"python -c '{code}'")


@contextmanager
def tracked(image: str, options: RunOptions) -> Iterator[TrackedContainer]:
    """A container of IMAGE, idle, labelled as a test's, and removed whatever happens."""
    labelled = replace(options, name=f"torchenv-test-{uuid.uuid4().hex[:8]}", labels={Label.TEST: "1"})
    container_id = engine.get().start(image, ["sleep", "infinity"], labelled)
    try:
        yield TrackedContainer(
            container_id, testinfra.get_host(f"docker://{container_id}"), testinfra.get_host(f"docker://root@{container_id}")
        )
    finally:
        engine.get().remove_container(container_id)


@pytest.fixture(scope="package")
def container(image: str, variant: Variant) -> Iterator[TrackedContainer]:
    """One idle container per image for the tests here, gone when they end: a later tier
    (the registry's round trip) removes the image, which a running container would hold."""
    with tracked(image, RunOptions(platform=variant.platform, gpus=GPUS)) as found:
        yield found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Each image test's outcome goes into the image's test record: `invoke push` needs one
    in which every test passed (a skip is recorded as a skip, never as a pass)."""
    report = yield
    # By the test's image, whether the test asks for it or only for what is made of it
    # (the idle container, the secret scan).
    callspec = getattr(item, "callspec", None)
    entry = callspec.params.get("under_test") if callspec else None
    reference = TESTED.get(entry.id) if entry is not None else None
    if reference and (report.when == "call" or report.failed or report.skipped):
        image_id = engine.get().image_id(reference)
        if image_id:
            outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
            testrecords.add_result(image_id, Settings.load(), item.nodeid, outcome)
    return report
