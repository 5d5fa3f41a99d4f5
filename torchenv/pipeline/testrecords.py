"""Which images passed their tests: the image tests write a record per image ID, and
`invoke push` pushes only an image all of whose recorded tests passed (a skip is no pass)."""

from __future__ import annotations

import json
from pathlib import Path

from torchenv import display_path, statefiles
from torchenv.errors import TorchenvError
from torchenv.model.records import TestRecord
from torchenv.model.settings import Settings


def record_path(image_id: str, settings: Settings) -> Path:
    return settings.work_dir / "test-records" / f"{image_id.removeprefix('sha256:')}.json"


def read_record(image_id: str, settings: Settings) -> TestRecord | None:
    path = record_path(image_id, settings)
    if not path.exists():
        return None
    try:
        return TestRecord.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        raise TorchenvError(
            f"the test record {display_path(path)} is not one torchenv wrote; remove it and run the image's tests again"
        ) from None


def add_result(image_id: str, settings: Settings, test: str, outcome: str) -> None:
    """Records OUTCOME ("passed", "failed" or "skipped") of TEST for IMAGE_ID."""
    path = record_path(image_id, settings)
    with statefiles.exclusive(path):
        record = read_record(image_id, settings) or TestRecord(image_id)
        record.add(test, outcome)
        statefiles.write_text(path, json.dumps(record.to_json(), indent=2) + "\n")


def passed_record(image_id: str, settings: Settings) -> TestRecord | None:
    """The image's record when its tests ran and every one passed; else None."""
    record = read_record(image_id, settings)
    return record if record is not None and record.all_passed else None
