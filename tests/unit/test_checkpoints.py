"""What train accepts as its checkpoint (docker/app/torchenv_app/checkpoints.py), with
torch.load stood in for: the image tests load real and planted files with the real one."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import checkpoints

GOOD: dict[str, Any] = {
    "model": {"0.weight": object()},
    "optimizer": {"state": {}, "param_groups": []},
    "history": [{"epoch": 1, "loss": 1.2, "accuracy": 0.5}, {"epoch": 2, "loss": 0.9, "accuracy": 0.7}],
    "seed": 0,
    "features": 16,
    "run_id": "abc",
    "saved_at": 1.5,
}


class FakeTorch:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result, error, []

    def load(self, path: Path, **options: Any) -> Any:
        self.calls.append(options)
        if self.error:
            raise self.error
        return self.result


def test_a_good_checkpoint_is_read_weights_only() -> None:
    torch = FakeTorch(GOOD)
    assert checkpoints.load(torch, Path("c.pt")) is GOOD
    assert torch.calls == [{"map_location": "cpu", "weights_only": True}]


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ([1, 2], "holds a list"),
        ({**GOOD, "model": "x"}, "lacks train's 'model'"),
        ({key: value for key, value in GOOD.items() if key != "seed"}, "lacks train's 'seed'"),
        ({**GOOD, "seed": True}, "lacks train's 'seed'"),
        ({**GOOD, "run_id": 5}, "'run_id' of the wrong type"),
        ({**GOOD, "history": [{"epoch": 2, "loss": 1.0, "accuracy": 0.5}]}, "entry 1 is not"),
        ({**GOOD, "history": [{"epoch": 1, "loss": "x", "accuracy": 0.5}]}, "entry 1 is not"),
    ],
)
def test_what_is_not_trains_checkpoint_is_one_line(state: Any, said: str) -> None:
    with pytest.raises(checkpoints.CheckpointError) as raised:
        checkpoints.load(FakeTorch(state), Path("c.pt"))
    assert said in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("error", [pickle.UnpicklingError("Weights only load failed.\nRe-running..."), EOFError(), RuntimeError("bad zip")])
def test_a_file_torch_cannot_read_weights_only_is_one_line(error: Exception) -> None:
    with pytest.raises(checkpoints.CheckpointError) as raised:
        checkpoints.load(FakeTorch(error=error), Path("/out/checkpoint.pt"))
    message = str(raised.value)
    assert message.startswith("/out/checkpoint.pt is not a checkpoint train wrote") and "\n" not in message
