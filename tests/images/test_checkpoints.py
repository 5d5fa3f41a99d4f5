"""`train --resume` reads a checkpoint from a folder others may write (a shared claim,
Slurm's 1777 /out): a planted pickle must not run, and every file that is not train's own
checkpoint of this model and seed is one `train: error:` line with its exit code."""

from __future__ import annotations

import pytest

from .conftest import TrackedContainer

# A checkpoint whose unpickling runs a command: torch.load's default in torch 2.0/2.1.
PLANT = """
import os, sys, torch
class Planted:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[1] + "/RAN",))
torch.save({"model": Planted(), "optimizer": {}, "history": [], "seed": 0, "features": 16}, sys.argv[1] + "/checkpoint.pt")
"""

EXIT_USAGE, EXIT_BAD_CHECKPOINT = 2, 13


def resume(container: TrackedContainer, folder: str, *options: str) -> tuple[int, list[str]]:
    result = container.host.run(f"train --epochs 3 --resume --out {folder} {' '.join(options)}")
    assert "Traceback" not in result.stderr, result.stderr
    return result.rc, result.stderr.strip().splitlines()


def test_a_planted_pickle_in_the_checkpoint_does_not_run(container: TrackedContainer) -> None:
    container.host.check_output("mkdir -p /tmp/planted && cat > /tmp/planted/plant.py <<'EOF'\n" + PLANT + "\nEOF")
    container.host.check_output("python /tmp/planted/plant.py /tmp/planted")
    code, lines = resume(container, "/tmp/planted")
    assert not container.host.file("/tmp/planted/RAN").exists, "train ran the code the checkpoint named"
    assert code == EXIT_BAD_CHECKPOINT and len(lines) == 1 and lines[0].startswith("train: error: --resume: "), lines
    # The same file with the default torch.load does run it: the test can fail.
    container.host.check_output("python -c 'import torch; torch.load(\"/tmp/planted/checkpoint.pt\")' || true")
    assert container.host.file("/tmp/planted/RAN").exists


@pytest.mark.parametrize(
    ("what", "make", "options", "exit_code", "said"),
    # One epoch is too few for train's loss check (exit 3), but its checkpoint is written.
    [
        ("garbage", "head -c 4096 /dev/urandom > {folder}/checkpoint.pt", "", EXIT_BAD_CHECKPOINT, "is not a checkpoint train wrote"),
        ("a list", "python -c 'import torch; torch.save([1, 2], \"{folder}/checkpoint.pt\")'", "", EXIT_BAD_CHECKPOINT, "holds a list"),
        (
            "another seed",
            "train --epochs 1 --seed 5 --out {folder} > /dev/null 2>&1; test -s {folder}/checkpoint.pt",
            "--seed 6",
            EXIT_USAGE,
            "was trained with --seed 5",
        ),
        (
            "another model",
            "train --epochs 1 --features 8 --out {folder} > /dev/null 2>&1; test -s {folder}/checkpoint.pt",
            "",
            EXIT_USAGE,
            "--features 8",
        ),
    ],
)
def test_a_checkpoint_that_is_not_this_runs_is_one_line(
    container: TrackedContainer, what: str, make: str, options: str, exit_code: int, said: str
) -> None:
    folder = f"/tmp/resume-{what.replace(' ', '-')}"
    container.host.check_output(f"rm -rf {folder} && mkdir -p {folder} && " + make.format(folder=folder))
    code, lines = resume(container, folder, options)
    assert code == exit_code and len(lines) == 1 and said in lines[0] and lines[0].startswith("train: error: --resume: "), lines
