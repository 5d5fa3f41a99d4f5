"""`invoke test`: the test tiers in order. The unit tier (offline, no Docker) runs first
and a failure there stops the run; then everything else, with the slowest tests listed
and a JUnit XML report per tier in build/test-results/."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from torchenv import PROJECT_ROOT, display_path

REPORTS = PROJECT_ROOT / "build" / "test-results"


@dataclass(frozen=True)
class Tier:
    name: str
    arguments: tuple[str, ...]

    def command(self) -> list[str]:
        report = REPORTS / f"{self.name}.xml"
        return [sys.executable, "-m", "pytest", "-ra", f"--junitxml={report}", *self.arguments]


def tiers(unit_only: bool = False, variant: str | None = None, images: tuple[str, ...] = (), every_platform: bool = False) -> list[Tier]:
    """What to run: the unit tier, then (unless UNIT_ONLY) the rest, for one VARIANT's images,
    or for IMAGES given as they are (then only tests/images, nothing built). The variants'
    images are built for this host's platform; EVERY_PLATFORM adds the others, emulated."""
    unit = Tier("unit", ("tests/unit", "-m", "unit"))
    if unit_only:
        return [unit]
    if images:
        return [unit, Tier("images", ("tests/images", "--durations=30", *(f"--image={image}" for image in images)))]
    selection = ("--variants", variant) if variant else ()
    platforms = ("--platforms", "all") if every_platform else ()
    return [unit, Tier("rest", ("-m", "not unit", "--durations=30", *selection, *platforms))]


def run(chosen: list[Tier]) -> int:
    """Runs the tiers in order; the first that fails ends the run with its exit code."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    for tier in chosen:
        print(f"torchenv: test tier '{tier.name}': {' '.join(tier.arguments)}", flush=True)
        code = subprocess.run(tier.command(), cwd=PROJECT_ROOT).returncode
        print(f"torchenv: test tier '{tier.name}' exited {code} (JUnit report: {display_path(REPORTS / (tier.name + '.xml'))})", flush=True)
        if code != 0:
            return code
    return 0
