"""The committed locks, and what builds do with a lock that is missing, stale or odd."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.locking.locks import LOCK_DIR, base_drift, locked_packages, read_lock, without_epoch
from torchenv.locking.sizes import locked_hashes
from torchenv.model.matrix import load_matrix
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline import build
from torchenv.pipeline.build import build_request, lock_for, needed_space_gb

from .fake_engine import FakeEngine

# (variant, platform) of the locks made here; cpu on amd64 and cu118 need the PyTorch index.
LOCKED_HERE = [("cu117", "linux/amd64"), ("cu121", "linux/amd64"), ("cpu", "linux/arm64")]
LOCKED_IDS = ["cu117", "cu121", "cpu-arm64"]


@pytest.fixture
def matrix():
    return load_matrix()


@pytest.mark.parametrize(("name", "platform"), LOCKED_HERE, ids=LOCKED_IDS)
def test_committed_lock_pins_every_package_with_a_hash(matrix, name: str, platform: str) -> None:
    lock = read_lock(matrix.get(name, platform))
    assert lock is not None
    text = lock.path.read_text()
    hashed = re.findall(r"^([A-Za-z0-9_.\-]+)==\S+ \\\n(?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M)
    packages = locked_packages(lock)
    assert len(packages) > (25 if name.startswith("cu") else 12)  # the CUDA builds bring nvidia-* wheels
    assert sorted(name.lower() for name in hashed) == sorted(packages)
    variant = matrix.get(name, platform)
    assert packages["torch"] == variant.torch and packages["torchvision"] == variant.torchvision
    assert packages["numpy"].startswith("1.")
    assert lock.platform == platform and lock.source == "pypi"
    assert not any(package.startswith(("nvidia-", "triton")) for package in packages) or variant.is_cuda


def test_cu121_lock_pins_nvjitlink_of_cuda_12_1(matrix) -> None:
    """torch 2.1's metadata leaves nvidia-nvjitlink-cu12 unpinned; the lock takes CUDA 12.1's."""
    assert locked_packages(read_lock(matrix.get("cu121")))["nvidia-nvjitlink-cu12"] == "12.1.105"


def test_cu117_lock_has_the_cuda_11_7_wheels(matrix) -> None:
    packages = locked_packages(read_lock(matrix.get("cu117")))
    assert packages["nvidia-cudnn-cu11"] == "8.5.0.96" and packages["triton"] == "2.0.0"


def test_lock_sha256_becomes_a_label_and_its_epoch_a_build_argument(matrix, tmp_path: Path) -> None:
    lock = read_lock(matrix.get("cu117"))
    request = build_request(matrix.get("cu117"), Settings(work_dir=tmp_path), "base", lock, base_packages="")
    assert request.build_args["LOCKED"] == "1"
    assert request.labels[Label.LOCK_SHA256] == lock.sha256 and len(lock.sha256) == 64
    assert request.build_args["SOURCE_DATE_EPOCH"] == str(lock.source_date_epoch)
    assert f"{Label.LOCK_SHA256}={lock.sha256}" in request.command(tmp_path / "iid")


def test_a_missing_lock_is_made_first_unless_unlocked_builds_are_allowed(matrix, tmp_path: Path, capsys, monkeypatch) -> None:
    assert lock_for(matrix.get("cu117"), Settings(lock_dir=tmp_path, allow_unlocked=True)) is None
    assert "not reproducible: no lock for cu117" in capsys.readouterr().out
    made = []

    def lock_from_the_index(variant, settings):  # stands in for uv, which would ask the index
        made.append(variant.name)
        target = settings.lock_dir / "cu117.txt"
        target.write_text((LOCK_DIR / "cu117.txt").read_text())
        return target

    monkeypatch.setattr(build, "write_lock", lock_from_the_index)
    lock = lock_for(matrix.get("cu117"), Settings(lock_dir=tmp_path))
    assert made == ["cu117"] and lock is not None and lock.path == tmp_path / "cu117.txt"
    out = capsys.readouterr().out
    assert "cu117 has no lock yet: locking it from PyPI" in out and "cu117.txt; commit it" in out


def test_stale_lock_is_refused(matrix, tmp_path: Path) -> None:
    text = (LOCK_DIR / "cu117.txt").read_text().replace("# requirements: torch==2.0.1 ", "# requirements: torch==2.0.0 ")
    (tmp_path / "cu117.txt").write_text(text)
    with pytest.raises(TorchenvError, match=r"cu117.txt is stale: it locks 'torch==2.0.0 .*run: invoke lock --variant cu117"):
        read_lock(matrix.get("cu117"), tmp_path)


def test_lock_without_header_is_refused(matrix, tmp_path: Path) -> None:
    (tmp_path / "cu117.txt").write_text("torch==2.0.1 --hash=sha256:00\n")
    with pytest.raises(TorchenvError, match="lacks torchenv's header"):
        read_lock(matrix.get("cu117"), tmp_path)


def test_epoch_is_the_only_thing_ignored_when_comparing_locks() -> None:
    text = (LOCK_DIR / "cu117.txt").read_text()
    assert without_epoch(text) == without_epoch(re.sub(r"source-date-epoch: \d+", "source-date-epoch: 1", text))
    assert without_epoch(text) != without_epoch(text.replace("torch==2.0.1", "torch==2.0.0"))


def test_base_drift_lists_changed_packages(tmp_path: Path) -> None:
    shutil.copy(LOCK_DIR / "base-bookworm.txt", tmp_path / "base-bookworm.txt")
    recorded = (tmp_path / "base-bookworm.txt").read_text()
    assert base_drift("bookworm", recorded, tmp_path) == []
    first = recorded.splitlines()[0]
    moved = recorded.replace(first, first + "+moved")
    assert base_drift("bookworm", moved, tmp_path) == sorted([first, first + "+moved"])


@pytest.mark.parametrize(("name", "platform"), LOCKED_HERE, ids=LOCKED_IDS)
def test_disk_estimate_comes_from_the_locked_wheel_sizes(matrix, name: str, platform: str) -> None:
    """The lock records its wheels' download size; a build's disk check scales with it."""
    variant = matrix.get(name, platform)
    lock = read_lock(variant)
    assert lock is not None and lock.wheel_bytes is not None
    low, high = (1.5e9, 4e9) if variant.is_cuda else (0.1e9, 0.5e9)  # torch with or without the nvidia wheels
    assert low < lock.wheel_bytes < high
    needed = needed_space_gb(variant, Settings.load(), lock)
    assert needed == pytest.approx(lock.wheel_bytes / 1e9 * 5.4 + 1)
    assert needed_space_gb(variant, Settings.load({"min_free_gb": 3}), lock) == 3
    # A rebuild of the same lock writes the venv once, not twice (its layers are there).
    again = needed_space_gb(variant, Settings.load(), lock, layers_present=True)
    assert again == pytest.approx(lock.wheel_bytes / 1e9 * 3.2 + 1)


def test_a_rebuild_counts_the_layers_present_only_for_an_image_of_the_same_lock(matrix) -> None:
    variant = matrix.get("cu117")
    settings = Settings.load()
    lock = read_lock(variant)
    assert lock is not None
    fake = FakeEngine()
    with engine.use(fake):
        assert not build.holds_same_lock(variant, settings, lock)  # no image yet
        fake.tags[build.image_tag(variant, settings)] = fake.add_image("other", {Label.LOCK_SHA256: "0" * 64})
        assert not build.holds_same_lock(variant, settings, lock)  # built from another lock
        fake.tags[build.image_tag(variant, settings)] = fake.add_image("same", {Label.LOCK_SHA256: lock.sha256})
        assert build.holds_same_lock(variant, settings, lock)
        assert not build.holds_same_lock(variant, settings, None)


def test_locked_hashes_reads_every_package() -> None:
    one, two, three = "1" * 64, "2" * 64, "3" * 64
    text = f"a==1 \\\n    --hash=sha256:{one} \\\n    --hash=sha256:{two}\n    # via b\nb==2 \\\n    --hash=sha256:{three}\n"
    assert locked_hashes(text) == {"a": [one, two], "b": [three]}
