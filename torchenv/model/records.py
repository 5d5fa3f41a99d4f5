"""The records torchenv writes and reads, one shape each: what was pushed, which tests an
image passed, what a reproducibility check found. (A lock is torchenv.locking.locks.Lock.)
Pure data with their JSON forms; where they are kept is the pipeline's business."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlatformPush:
    """One platform's image as pushed."""

    digest: str
    image_id: str
    lock_sha256: str
    # The image's revision label: the commit its provenance must name.
    revision: str = ""


@dataclass(frozen=True)
class PushRecord:
    """A variant as pushed: `digest` is what to pull (the manifest of a one-platform
    variant, the index of a multi-platform one); each platform's own image is in `platforms`."""

    registry: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    compression: str
    platforms: dict[str, PlatformPush]
    # Whether the push signed it and attached its provenance and SBOM.
    signed: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PushRecord:
        # Records written before every push listed its platforms held the one platform's
        # image at the top level.
        platforms = data.get("platforms") or {"linux/amd64": data}
        return cls(
            registry=data["registry"],
            repository=data["repository"],
            digest=data["digest"],
            tags=tuple(data.get("tags", ())),
            compression=data.get("compression", "gzip"),
            platforms={
                platform: PlatformPush(entry["digest"], entry.get("image_id", ""), entry.get("lock_sha256", ""), entry.get("revision", ""))
                for platform, entry in platforms.items()
            },
            signed=bool(data.get("signed", False)),
        )


@dataclass
class TestRecord:
    """Which image tests one image (by ID) passed, failed or skipped. A skip is never a pass."""

    __test__ = False  # not a pytest test class

    image_id: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    OUTCOMES = ("passed", "failed", "skipped")

    def add(self, test: str, outcome: str) -> None:
        if outcome not in self.OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        for kept in self.OUTCOMES:
            if test in getattr(self, kept):
                getattr(self, kept).remove(test)
        getattr(self, outcome).append(test)

    @property
    def all_passed(self) -> bool:
        """Tests ran, and every one passed: none failed, none was skipped."""
        return bool(self.passed) and not self.failed and not self.skipped

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "passed": self.passed, "failed": self.failed, "skipped": self.skipped}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRecord:
        return cls(data["image_id"], list(data.get("passed", [])), list(data.get("failed", [])), list(data.get("skipped", [])))


@dataclass(frozen=True)
class Comparison:
    """Two builds of one thing (the base, or the variant) compared layer by layer."""

    what: str
    first: str
    second: str
    # One line per differing layer and file; empty when the builds are identical.
    differences: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        verdict = f"identical: {self.first}" if self.identical else f"DIFFERENT: {self.first} vs {self.second}"
        return [f"{self.what}: {verdict}", *self.differences]


@dataclass(frozen=True)
class ReproReport:
    """What `invoke repro` found: the base's comparison (where torchenv makes the base) and the variant's."""

    variant: str
    comparisons: tuple[Comparison, ...]

    @property
    def identical(self) -> bool:
        return all(comparison.identical for comparison in self.comparisons)

    def lines(self) -> list[str]:
        return [line for comparison in self.comparisons for line in comparison.lines()]


@dataclass(frozen=True)
class VariantFigures:
    """What the bench measured of one variant: sizes in bytes (with a row per layer), times
    in seconds and throughputs in samples per second."""

    measured: str
    sizes: dict[str, Any]
    times: dict[str, float]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantFigures:
        return cls(data.get("measured", ""), dict(data["sizes"]), dict(data["times"]))


@dataclass(frozen=True)
class BenchResults:
    """bench/results/latest.json: when the last run was, and each variant's figures (a run
    for some variants keeps the others')."""

    measured: str
    variants: dict[str, VariantFigures]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResults:
        return cls(data["measured"], {name: VariantFigures.from_json(figures) for name, figures in data["variants"].items()})
