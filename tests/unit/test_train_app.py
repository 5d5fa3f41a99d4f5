"""train's reading of a DataLoader worker's death (no torch needed)."""

from __future__ import annotations

import sys

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import train


@pytest.mark.parametrize(
    ("message", "shared_memory"),
    [
        (
            "DataLoader worker (pid 42) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory.",
            True,
        ),
        ("DataLoader worker (pid(s) 42) exited unexpectedly", True),
        ("Caught RuntimeError in DataLoader worker process 0.\nunable to write to file </torch_1_2>: No space left on device (28)", True),
        ("DataLoader worker (pid 42) is killed by signal: Killed.", False),  # the kernel's OOM killer
        ("Caught RuntimeError in DataLoader worker process 0.\nCUDA out of memory", False),
        ("CUDA error: no kernel image is available for execution on the device", False),
    ],
)
def test_only_a_death_of_shared_memory_is_blamed_on_it(message: str, shared_memory: bool) -> None:
    assert train.worker_died_of_shared_memory(RuntimeError(message)) is shared_memory


def test_the_shared_memory_error_names_the_batch_and_the_flags() -> None:
    args = train.parse_args(["--features", "32768", "--batch-size", "768"])
    error = train.shared_memory_error(args)
    assert error.exit_code == train.EXIT_SHARED_MEMORY == 9
    assert str(error).startswith("a DataLoader worker died handing over a batch of 96 MB through /dev/shm (")
    assert "--shm-size 8g" in str(error) and "--workers 0" in str(error) and "\n" not in str(error)
