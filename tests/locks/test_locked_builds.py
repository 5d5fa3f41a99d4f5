"""Builds from locks, for real: a tampered hash stops the build in one line naming the
package and tags nothing; an unlocked build is allowed only on request and says so in
its labels; two from-scratch builds give the same image (`invoke repro`)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.errors import TorchenvError
from torchenv.locking.locks import LOCK_DIR, locked_packages, read_lock
from torchenv.model.matrix import load_matrix
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant

VARIANT = "cu117"

pytestmark = pytest.mark.needs_variants("cu117")


def image_state() -> set[str]:
    return engine.get().references()


def tampered_lock_dir(tmp_path: Path, package: str) -> Path:
    """A copy of the lock in which every hash of PACKAGE is wrong (pip accepts any one of them)."""
    text = (LOCK_DIR / f"{VARIANT}.txt").read_text()
    block = re.search(rf"^{re.escape(package)}==\S+ \\\n(?:\s+--hash=sha256:[0-9a-f]{{64}}(?: \\)?\n)+", text, re.M)
    assert block, f"{package} is not in the lock"
    tampered_block = re.sub(r"[0-9a-f]{64}", "0" * 64, block.group(0))
    (tmp_path / f"{VARIANT}.txt").write_text(text.replace(block.group(0), tampered_block))
    return tmp_path


def test_tampered_hash_fails_in_one_line_and_tags_nothing(tmp_path: Path) -> None:
    settings = Settings.load()
    settings = dataclasses.replace(settings, lock_dir=tampered_lock_dir(tmp_path, "idna"), work_dir=tmp_path / "work")
    matrix = load_matrix(settings.matrix)
    before = image_state()
    with pytest.raises(TorchenvError) as caught:
        build_variant(matrix.get(VARIANT), matrix, settings)
    message = str(caught.value)
    assert re.search(r"the build of cu117 failed: idna==\S+ does not match its hash in the lock \(expected sha256 0{16}", message), message
    assert message.endswith("nothing was tagged") and "\n" not in message
    assert {line for line in image_state() if not line.startswith("<none>")} == {line for line in before if not line.startswith("<none>")}


def test_a_build_without_a_lock_locks_it_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a lock (and without --allow-unlocked) the build locks the variant from its
    wheel source, which answered, then builds from that lock: it stops here at a disk check
    set out of reach, after the lock and before anything is built."""
    settings = dataclasses.replace(
        Settings.load(), lock_dir=tmp_path, image_name="torchenv-test-unlocked", work_dir=tmp_path / "work", min_free_gb=1e6
    )
    matrix = load_matrix(settings.matrix)
    before = image_state()
    with pytest.raises(TorchenvError, match=r"a build of cu117 needs about 1000000 GB"):
        build_variant(matrix.get(VARIANT), matrix, settings)
    assert "cu117 has no lock yet: locking it from PyPI" in capsys.readouterr().out
    made = read_lock(matrix.get(VARIANT), tmp_path)
    assert made is not None and made.source == "pypi"
    # The same pins as the committed lock, resolved again (versions of PyPI's newer releases may differ).
    pins = locked_packages(made)
    assert pins["torch"] == "2.0.1" and pins["nvidia-cudnn-cu11"] == "8.5.0.96" and pins["numpy"].startswith("1.")
    assert image_state() == before


def test_ctrl_c_tags_nothing_and_the_rerun_resumes_and_is_labelled_unlocked(tmp_path: Path) -> None:
    """An unlocked build (so its venv really gets built) is interrupted with SIGINT in the
    middle of its install step: no tag. The rerun takes the finished steps from the cache,
    completes, and its labels say it is not reproducible."""
    (tmp_path / "locks").mkdir()
    env = {
        **os.environ,
        "TORCHENV_LOCK_DIR": str(tmp_path / "locks"),
        "TORCHENV_ALLOW_UNLOCKED": "1",
        "TORCHENV_IMAGE_NAME": "torchenv-test-sigint",
        "TORCHENV_WORK_DIR": str(tmp_path / "work"),
    }
    command = [str(Path(sys.executable).with_name("invoke")), "build", "--variant", VARIANT]
    docker = engine.get()
    records_before = set(docker.build_cache_ids())
    try:
        build = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        assert build.stdout is not None
        for line in build.stdout:
            if 'install.sh "torch"' in line and "RUN" in line:
                time.sleep(8)  # well inside uv's download/install of the venv's second layer
                os.killpg(build.pid, signal.SIGINT)
                break
        build.communicate(timeout=300)
        assert build.returncode != 0
        assert docker.image_ids({"reference": "torchenv-test-sigint"}) == set()

        rerun = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        assert re.search(r"\[torchenv-base 2/2\] RUN .*\n#\d+ CACHED", rerun.stdout + rerun.stderr), "the rerun did not reuse the cache"
        labels = docker.require_image(f"torchenv-test-sigint:{VARIANT}").labels
        assert labels[Label.LOCK_SHA256] == "none: not reproducible"
        assert "not reproducible: no lock for cu117" in rerun.stdout
    finally:
        for reference in docker.image_ids({"reference": "torchenv-test-sigint"}):
            docker.remove_image(reference, force=True)
        for record in docker.build_records_since(records_before):  # a torch venv is ~5 GB
            docker.prune_build_cache(record)


def test_repro_builds_twice_and_finds_them_identical() -> None:
    """The base, the variant and a project's layers on it (examples/finetune), each built
    twice from scratch."""
    invoke = Path(sys.executable).with_name("invoke")
    command = [str(invoke), "repro", "--variant", VARIANT, "--project", "examples/finetune"]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^base mmdebstrap:bookworm: identical: sha256:[0-9a-f]{64}$", result.stdout, re.M), result.stdout
    assert re.search(rf"^{VARIANT}: identical: sha256:[0-9a-f]{{64}}$", result.stdout, re.M), result.stdout
    assert re.search(rf"^{VARIANT} with project finetune: identical: sha256:[0-9a-f]{{64}}$", result.stdout, re.M), result.stdout
