"""The free space on Docker's data root after each test that uses the engine, kept in
build/test-results/disk-free.tsv, and the lowest point named at the end of the run: a run
that runs out of disk then says which test held the most, and CI's log shows its margin."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from torchenv import engine


class DiskWatch:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.root: Path | None = None
        self.asked = False
        self.lowest: tuple[float, str] | None = None

    def data_root(self) -> Path | None:
        if not self.asked:
            self.asked = True
            try:
                self.root = engine.get().data_root()
            except Exception:  # no engine: nothing to watch; the tests say why
                self.root = None
            if self.root is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                self.log.write_text("time\tfree_gb\ttest\n")
        return self.root

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if nodeid.startswith("tests/unit/") or (root := self.data_root()) is None:
            return
        free_gb = shutil.disk_usage(root).free / 1e9
        with self.log.open("a") as out:
            out.write(f"{time.strftime('%H:%M:%S')}\t{free_gb:.1f}\t{nodeid}\n")
        if self.lowest is None or free_gb < self.lowest[0]:
            self.lowest = (free_gb, nodeid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lowest is not None:
            free_gb, nodeid = self.lowest
            terminalreporter.write_line(
                f"torchenv: the least free space on Docker's data root ({self.root}): {free_gb:.1f} GB, after {nodeid} "
                f"(every test's in {self.log})"
            )
