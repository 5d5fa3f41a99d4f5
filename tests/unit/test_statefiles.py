"""State files (torchenv/statefiles.py): never half-written, and read-modify-writes that
run at once lose nothing; a truncated test record is one line, not a traceback."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from torchenv import statefiles
from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import testrecords


def test_a_write_that_fails_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "digests.json"
    path.write_text('{"old": 1}\n')

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefiles.os, "fsync", full_disk)
    with pytest.raises(TorchenvError, match=r"cannot write .*digests.json \(No space left on device\); it is as it was"):
        statefiles.write_text(path, '{"new": 2}\n')
    assert path.read_text() == '{"old": 1}\n'
    assert [entry.name for entry in tmp_path.iterdir()] == ["digests.json"], "no temporary file is left behind"


def test_a_write_keeps_the_files_mode(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o600)
    statefiles.write_text(path, "A=2\n")
    assert path.read_text() == "A=2\n" and path.stat().st_mode & 0o777 == 0o600


def bump(path: Path, times: int) -> None:
    for _ in range(times):
        with statefiles.exclusive(path):
            count = json.loads(path.read_text())["count"] if path.exists() else 0
            statefiles.write_text(path, json.dumps({"count": count + 1}))


def test_updates_that_run_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    workers = [multiprocessing.get_context("fork").Process(target=bump, args=(path, 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert json.loads(path.read_text()) == {"count": 120}


def test_a_truncated_test_record_is_one_line(tmp_path: Path) -> None:
    settings = Settings(work_dir=tmp_path)
    testrecords.add_result("sha256:abc", settings, "tests/images/test_x.py::test_y", "passed")
    path = testrecords.record_path("sha256:abc", settings)
    path.write_text(path.read_text()[:20])
    with pytest.raises(TorchenvError, match=r"^the test record .* is not one torchenv wrote; remove it and run the image's tests again$"):
        testrecords.read_record("sha256:abc", settings)
