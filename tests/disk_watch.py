"""The free space on Docker's data root while the tests that use the engine run: sampled
every few seconds (a test's peak, such as an image loaded into another store, lasts only
while it runs), kept per test in build/test-results/disk-free.tsv with each test's lowest
sample, and the run's lowest point named at the end. A run that runs out of disk then says
which test held the most, and CI's log shows its margin."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from torchenv import engine

SAMPLE_EVERY_S = 5.0


class DiskWatch:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.root: Path | None = None
        self.asked = False
        self.current = ""
        self.lowest_in_test: float | None = None
        self.lowest: tuple[float, str] | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def data_root(self) -> Path | None:
        if not self.asked:
            self.asked = True
            try:
                self.root = engine.get().data_root()
            except Exception:  # no engine: nothing to watch; the tests say why
                self.root = None
            if self.root is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                self.log.write_text("ended\tlowest_free_gb\ttest\n")
                threading.Thread(target=self.sample_until_stopped, name="torchenv-disk-watch", daemon=True).start()
        return self.root

    def sample(self) -> None:
        if self.root is None:
            return
        free_gb = shutil.disk_usage(self.root).free / 1e9
        with self.lock:
            if self.current and (self.lowest_in_test is None or free_gb < self.lowest_in_test):
                self.lowest_in_test = free_gb
            if self.current and (self.lowest is None or free_gb < self.lowest[0]):
                self.lowest = (free_gb, self.current)

    def sample_until_stopped(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if nodeid.startswith("tests/unit/") or self.data_root() is None:
            return
        with self.lock:
            self.current, self.lowest_in_test = nodeid, None
        self.sample()

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if nodeid != self.current:
            return
        self.sample()
        with self.lock:
            lowest, self.current = self.lowest_in_test, ""
        if lowest is not None:
            with self.log.open("a") as out:
                out.write(f"{time.strftime('%H:%M:%S')}\t{lowest:.1f}\t{nodeid}\n")

    def pytest_sessionfinish(self) -> None:
        self.stop.set()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lowest is not None:
            free_gb, nodeid = self.lowest
            terminalreporter.write_line(
                f"torchenv: the least free space on Docker's data root ({self.root}): {free_gb:.1f} GB, during {nodeid} "
                f"(each test's lowest in {self.log})"
            )
