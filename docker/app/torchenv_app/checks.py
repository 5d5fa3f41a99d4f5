"""One check's result, as `verify` reports it."""

from __future__ import annotations

from dataclasses import dataclass

OK, FAIL, SKIP, WARN = "ok", "fail", "skip", "warn"


@dataclass
class Check:
    name: str
    status: str
    detail: str
