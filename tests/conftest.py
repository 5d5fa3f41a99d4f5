"""Options shared by every test group, the test tiers, the skip policy, and progress per variant.

Tiers are markers given by a test's folder (TIERS); `-m unit` runs the unit tier, which
needs neither Docker nor the network. A skip counts only for a reason in tests/skips.py:
any other skip fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchenv.model import platforms

from . import skips
from .canaries import plant_registry_login
from .disk_watch import DiskWatch
from .progress import VariantProgress

HERE = Path(__file__).parent
# folder -> markers: what a test there needs.
TIERS = {
    "unit": ("unit",),
    "cli": ("docker", "network"),
    "base": ("docker", "network"),
    "images": ("docker", "image", "network"),
    "locks": ("docker", "image", "network"),
    "registry": ("docker", "image", "registry"),
    "network": ("network",),
    "offline": ("docker", "image"),
    "mirror": ("docker", "image", "network"),
    "projects": ("docker", "image", "network"),
    "devcontainer": ("docker", "image", "network"),
    "clusters": ("docker", "image", "network"),
    "podman": ("docker", "image", "network"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--variants",
        default="",
        help="comma-separated variants whose images tests/images builds and checks (default: every variant in the matrix)",
    )
    parser.addoption(
        "--platforms",
        choices=("native", "all"),
        default="native",
        help="native (the default): each variant on this host's platform only; all: every platform of each, "
        "the others emulated (slow: cpu's arm64 image takes some 17 minutes on 2 cores)",
    )
    parser.addoption(
        "--image",
        action="append",
        default=[],
        help="test this existing image (a tag or ID; repeatable) instead of building the variants: nothing is built or downloaded",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(VariantProgress(), "torchenv-variant-progress")
    if not config.option.markexpr == "unit":
        plant_registry_login(Path(config.rootpath) / "build" / "test-docker-config")
        config.pluginmanager.register(DiskWatch(Path(config.rootpath) / "build" / "test-results" / "disk-free.tsv"), "torchenv-disk-watch")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(HERE).parts[0]
        for marker in TIERS.get(folder, ()):
            item.add_marker(marker)
        if "gpu" in item.keywords and "unit" in item.keywords:
            raise pytest.UsageError(f"{item.nodeid}: a unit test cannot need a GPU")
    # A test built on certain variants' images (needs_variants) runs when they are selected:
    # not with --variants naming others, and not with --image, which builds nothing.
    chosen = {name.strip() for name in config.getoption("--variants").split(",") if name.strip()}
    given = bool(config.getoption("--image"))

    def selected(item: pytest.Item) -> bool:
        # A test that needs a GPU has nothing to check without one: not collected rather
        # than skipped (an image's test record with a skip is not pushed).
        if item.get_closest_marker("gpu") and not os.environ.get("TORCHENV_TEST_GPUS"):
            return False
        needs = {name for marker in item.iter_markers("needs_variants") for name in marker.args}
        needs_platforms = {name for marker in item.iter_markers("needs_platforms") for name in marker.args}
        if not all(platform_selected(config, platform) for platform in needs_platforms):
            return False
        return not needs or (not given and (not chosen or needs <= chosen))

    dropped = [item for item in items if not selected(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if selected(item)]


def platform_selected(config: pytest.Config, platform: str) -> bool:
    """Whether --platforms takes in PLATFORM: this host's always; the others with `all`."""
    return config.getoption("--platforms") == "all" or platform == platforms.host_platform()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A skip for a reason tests/skips.py does not allow fails the test."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not skips.is_allowed(reason):
            report.outcome = "failed"
            report.longrepr = f"unexpected skip (only {', '.join(skips.ALLOWED)} may skip): {reason}"
    return report
