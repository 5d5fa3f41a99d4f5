"""Reading back the checkpoints train writes. They sit where others can write too (a shared
claim on Kubernetes, Slurm's 1777 /out), and torch 2.0/2.1's torch.load unpickles in full
by default, running whatever the file names: here only tensors and plain data are read
(weights_only), then the structure is checked before anything uses it."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any


class CheckpointError(Exception):
    """A file that is not a checkpoint train wrote, in one line."""


# What train saves, and the type each must have to be used.
FIELDS: dict[str, type | tuple[type, ...]] = {"model": dict, "optimizer": dict, "history": list, "seed": int, "features": int}
OPTIONAL: dict[str, type | tuple[type, ...]] = {"run_id": str, "saved_at": (int, float)}
HISTORY_KEYS = ("epoch", "loss", "accuracy")


def load(torch: Any, path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at PATH, read without executing anything in it and checked; any
    other file raises CheckpointError naming it."""
    try:
        with warnings.catch_warnings():
            # torch 2.0's weights-only loader warns that TypedStorage is deprecated: its own internals.
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a checkpoint train wrote, or holds more than tensors and plain data ({first})") from None
    check(state, path)
    return state


def check(state: Any, path: Path) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not train's checkpoint (a dict)")
    for name, kind in FIELDS.items():
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool):
            raise CheckpointError(f"{path} lacks train's {name!r} (or it is not a {getattr(kind, '__name__', kind)})")
    for name, kind in OPTIONAL.items():
        if name in state and not isinstance(state[name], kind):
            raise CheckpointError(f"{path} has a {name!r} of the wrong type")
    for number, entry in enumerate(state["history"], 1):
        if (
            not isinstance(entry, dict)
            or entry.get("epoch") != number
            or not all(isinstance(entry.get(key), (int, float)) for key in HISTORY_KEYS)
        ):
            raise CheckpointError(f"{path}: its history's entry {number} is not train's epoch record")
