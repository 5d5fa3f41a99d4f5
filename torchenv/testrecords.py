"""Which images passed their tests: the image tests write a record per image ID, and
`invoke push` pushes only an image whose record shows passes and no failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchenv.settings import Settings


def record_path(image_id: str, settings: Settings) -> Path:
    return settings.work_dir / "test-records" / f"{image_id.removeprefix('sha256:')}.json"


def add_result(image_id: str, settings: Settings, test: str, passed: bool) -> None:
    path = record_path(image_id, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.loads(path.read_text()) if path.exists() else {"image_id": image_id, "passed": [], "failed": []}
    for outcome in ("passed", "failed"):
        if test in record[outcome]:
            record[outcome].remove(test)
    record["passed" if passed else "failed"].append(test)
    path.write_text(json.dumps(record, indent=2) + "\n")


def passed_record(image_id: str, settings: Settings) -> dict[str, Any] | None:
    path = record_path(image_id, settings)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record["passed"] and not record["failed"] else None
