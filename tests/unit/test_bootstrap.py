"""Where the base's mmdebstrap runs, and how it runs in a container, on a fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model import names, platforms
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline import base, bootstrap

from .fake_engine import FakeEngine

SPEC = bootstrap.RootfsSpec("bookworm", platforms.AMD64, base.PACKAGES, base.DPKG_OPTIONS, base.CUSTOMIZE_HOOKS)


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    replacement = FakeEngine()
    with engine.use(replacement):
        yield replacement


@pytest.mark.parametrize(
    ("found", "setting", "where"),
    [("1.3.5", "auto", "host"), (None, "auto", "container"), ("1.5.7", "auto", "container"), ("1.3.5", "container", "container")],
)
def test_the_host_makes_the_base_where_its_mmdebstrap_is_the_pinned_one(monkeypatch, found: str | None, setting: str, where: str) -> None:
    """Another mmdebstrap makes another tarball: then the container's pinned one makes it."""
    monkeypatch.setattr(bootstrap, "host_version", lambda: found)
    assert bootstrap.UPSTREAM_VERSION == "1.3.5"
    assert bootstrap.maker(Settings(base_maker=setting)) == where


def test_a_host_mmdebstrap_that_does_not_run_counts_as_none(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bootstrap.shutil, "which", lambda program: str(tmp_path / "gone"))
    assert bootstrap.host_version() is None


def test_an_unknown_maker_is_one_line() -> None:
    with pytest.raises(TorchenvError, match=r"base_maker \(TORCHENV_BASE_MAKER\) is 'vm'; use one of: auto, host, container"):
        bootstrap.maker(Settings(base_maker="vm"))


def test_the_container_runs_the_hosts_command_with_pinned_mmdebstrap(fake: FakeEngine, tmp_path: Path) -> None:
    present = fake.add_image("an earlier base", labels={Label.BASE: "bookworm"})
    fake.tags[f"{names.BASE_REPOSITORY}:bookworm-0123456789ab"] = present
    # A bullseye base cannot run it: its apt has mmdebstrap 0.7, not the pinned one.
    fake.tags[f"{names.BASE_REPOSITORY}:bullseye-0123456789ab"] = fake.add_image("a bullseye base", labels={Label.BASE: "bullseye"})
    rootfs = tmp_path / "rootfs.tar"
    with pytest.raises(TorchenvError, match=r"mmdebstrap in a container of sha256:\w+ could not make the bookworm base"):
        bootstrap.in_container(SPEC, Settings(), rootfs, 1700000000)  # the fake writes no tarball
    assert fake.calls[-1] == ("run", (present, ("sh", "/out/make-rootfs.sh")))
    options = fake.run_options[-1]
    assert options.privileged and not options.hardened and options.platform == platforms.AMD64
    assert options.volumes == {str(tmp_path): ("/out", "rw")}
    script = (tmp_path / "make-rootfs.sh").read_text()
    assert f"mmdebstrap={bootstrap.MMDEBSTRAP_VERSION}" in script
    # The same command as on the host, its output in the mounted folder, its environment fixed.
    host = bootstrap.mmdebstrap_command(SPEC, Settings(), str(rootfs))
    inside = bootstrap.mmdebstrap_command(SPEC, Settings(), "/out/rootfs.tar")
    assert host[:-1] == inside[:-1] and host[-1] == str(rootfs)
    assert "exec env -i PYTHONDONTWRITEBYTECODE=1 LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH=1700000000 " in script
    assert "binfmt_misc" not in script  # a native base needs no emulators


def test_another_architecture_mounts_the_hosts_emulators(fake: FakeEngine, tmp_path: Path) -> None:
    fake.pullable[bootstrap.DEBIAN_IMAGE] = fake.add_image("debian")
    arm64 = bootstrap.RootfsSpec("bookworm", platforms.ARM64, base.PACKAGES, base.DPKG_OPTIONS, base.CUSTOMIZE_HOOKS)
    with pytest.raises(TorchenvError):
        bootstrap.in_container(arm64, Settings(), tmp_path / "rootfs.tar", 1700000000)
    script = (tmp_path / "make-rootfs.sh").read_text()
    assert "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc" in script and " arch-test " in script
    assert "--architectures=arm64" in script and fake.run_options[-1].platform == platforms.host_platform()


def test_without_a_base_or_a_registry_the_container_maker_says_what_to_do(fake: FakeEngine, tmp_path: Path) -> None:
    with pytest.raises(TorchenvError) as caught:
        bootstrap.in_container(SPEC, Settings(), tmp_path / "rootfs.tar", 1700000000)
    message = str(caught.value)
    assert message.startswith("no torchenv base here to run mmdebstrap in, and pulling debian:bookworm-slim@sha256:")
    assert message.endswith(
        "install mmdebstrap 1.3.5 on the host, or let the engine reach a registry once (it pulls Debian's image by digest)"
    )
    assert "\n" not in message and not fake.run_options


def test_the_debian_image_is_pulled_where_no_base_is_present(fake: FakeEngine, tmp_path: Path) -> None:
    fake.pullable[bootstrap.DEBIAN_IMAGE] = fake.add_image("debian")
    with pytest.raises(TorchenvError, match="could not make the bookworm base"):
        bootstrap.in_container(SPEC, Settings(), tmp_path / "rootfs.tar", 1700000000)
    assert ("pull", bootstrap.DEBIAN_IMAGE) in fake.calls and fake.calls[-1][1][0] == bootstrap.DEBIAN_IMAGE
