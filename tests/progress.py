"""Progress per variant for the image tests (`invoke test`): a rich line on the real
stderr when a variant's tests start and when they are done, with their outcomes and
time. pytest groups a session-scoped parameter's tests together, so the lines bracket
each variant's run (its build included)."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict

import pytest
from rich.console import Console


class VariantProgress:
    def __init__(self) -> None:
        self.console = Console(file=sys.__stderr__, highlight=False)
        self.totals: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self.outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.started: dict[str, float] = {}
        self.failed_ids: set[str] = set()

    @staticmethod
    def variant_of(item: pytest.Item) -> str | None:
        callspec = getattr(item, "callspec", None)
        under_test = callspec.params.get("under_test") if callspec else None
        return getattr(under_test, "id", None)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.names = {item.nodeid: name for item in items if (name := self.variant_of(item))}
        self.totals = Counter(self.names.values())

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        name = self.names.get(nodeid)
        if name and name not in self.started:
            self.started[name] = time.monotonic()
            order = list(self.totals).index(name) + 1
            # A line of its own: pytest may be in the middle of a row of dots.
            self.console.print(f"\n[bold]torchenv tests:[/] {name}: {self.totals[name]} tests (variant {order} of {len(self.totals)})")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = self.names.get(report.nodeid)
        if not name:
            return
        if report.failed and report.nodeid not in self.failed_ids:
            self.failed_ids.add(report.nodeid)
            self.outcomes[name]["failed"] += 1
        elif report.when == "call" and report.passed:
            self.outcomes[name]["passed"] += 1
        elif report.skipped:
            self.outcomes[name]["skipped"] += 1

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        name = self.names.get(nodeid)
        if not name:
            return
        self.finished[name] += 1
        if self.finished[name] == self.totals[name]:
            counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.outcomes[name].items())) or "nothing ran"
            colour = "red" if self.outcomes[name]["failed"] else "green"
            elapsed = time.monotonic() - self.started[name]
            took = f"{elapsed // 60:.0f}m{elapsed % 60:02.0f}s"
            self.console.print(f"\n[bold]torchenv tests:[/] {name} done: [{colour}]{counts}[/] in {took}")
