"""A fake of torchenv's engine interface (torchenv.engine.DockerEngine), for unit tests of
decisions and error paths: images, tags and containers are kept in memory, and every
call is recorded. It never reaches Docker."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from torchenv.engine import BuildRequest, BuildResult, CacheRecord, ImageFacts, RunOptions, RunResult
from torchenv.errors import TorchenvError

Runner = Any  # (image facts, command, options) -> RunResult


def image_id_for(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


@dataclass
class FakeEngine:
    images: dict[str, ImageFacts] = field(default_factory=dict)  # by ID
    tags: dict[str, str] = field(default_factory=dict)  # repository:tag -> ID
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # What a container run answers: command[0] -> exit code and output; default: exit 0, no output.
    answers: dict[str, RunResult] = field(default_factory=dict)
    build_exit: int = 0
    build_tail: tuple[str, ...] = ()
    cache: list[CacheRecord] = field(default_factory=list)
    registry: dict[str, str] = field(default_factory=dict)  # pushed repository:tag -> digest
    push_error: str | None = None
    # What a pull finds: reference -> image ID (an image in `images`).
    pullable: dict[str, str] = field(default_factory=dict)
    # The options of every container run, in order.
    run_options: list[RunOptions] = field(default_factory=list)
    # What `saved` streams for an image ID (a `docker save` archive); an empty archive otherwise.
    archives: dict[str, bytes] = field(default_factory=dict)

    # --- images ----------------------------------------------------------------------

    def add_image(self, seed: str, labels: Mapping[str, str] | None = None, platform: str = "linux/amd64") -> str:
        image_id = image_id_for(seed)
        os_name, architecture = platform.split("/")
        self.images[image_id] = ImageFacts(
            id=image_id,
            tags=(),
            labels=dict(labels or {}),
            layers=(image_id_for(seed + "/layer"),),
            user="1000:1000",
            created="2023-11-14T22:13:20Z",
            os=os_name,
            architecture=architecture,
            size=1000,
            repo_digests=(),
        )
        return image_id

    def _resolve(self, reference: str) -> str | None:
        if reference in self.images:
            return reference
        if "@" in reference:
            return self.tags.get(reference)
        if ":" not in reference.rsplit("/", 1)[-1]:
            reference += ":latest"
        return self.tags.get(reference)

    def image(self, reference: str) -> ImageFacts | None:
        image_id = self._resolve(reference)
        if image_id is None:
            return None
        facts = self.images[image_id]
        return replace(facts, tags=tuple(sorted(tag for tag, target in self.tags.items() if target == image_id)))

    def image_id(self, reference: str) -> str | None:
        facts = self.image(reference)
        return facts.id if facts else None

    def require_image(self, reference: str) -> ImageFacts:
        facts = self.image(reference)
        if facts is None:
            raise TorchenvError(f"no image {reference} in the engine; build or pull it first")
        return facts

    def image_ids(self, filters: Mapping[str, str | list[str]]) -> set[str]:
        found = set(self.images)
        if label := filters.get("label"):
            found = {image_id for image_id in found if str(label).split("=")[0] in self.images[image_id].labels}
        if repository := filters.get("reference"):
            found &= {target for tag, target in self.tags.items() if tag.rsplit(":", 1)[0] == repository}
        return found

    def tags_of(self, image_id: str, repository: str) -> list[str]:
        return sorted(
            tag.rsplit(":", 1)[1] for tag, target in self.tags.items() if target == image_id and tag.rsplit(":", 1)[0] == repository
        )

    def tag(self, source: str, target: str) -> None:
        image_id = self._resolve(source)
        if image_id is None:
            raise TorchenvError(f"tagging {target} failed: no such image: {source}")
        self.calls.append(("tag", target))
        self.tags[target] = image_id

    def remove_image(self, reference: str, force: bool = False) -> bool:
        self.calls.append(("remove_image", reference))
        if reference in self.tags:
            del self.tags[reference]
            return True
        if reference in self.images:
            del self.images[reference]
            self.tags = {tag: target for tag, target in self.tags.items() if target != reference}
            return True
        return False

    def history(self, reference: str) -> list[tuple[str, int]]:
        return [("RUN /bin/sh -c cp -R /mnt/. /opt/torchenv", 10)]

    def push(self, reference: str) -> str:
        self.calls.append(("push", reference))
        if self.push_error:
            raise TorchenvError(f"pushing {reference} failed: {self.push_error}")
        digest = image_id_for("manifest/" + self.tags[reference])
        self.registry[reference] = digest
        return digest

    def pull(self, reference: str, platform: str | None = None) -> str:
        self.calls.append(("pull", reference))
        if reference not in self.pullable:
            raise TorchenvError(f"pulling {reference} failed: manifest unknown")
        self.tags[reference] = self.pullable[reference]
        return self.pullable[reference]

    @contextmanager
    def saved(self, reference: str) -> Iterator[IO[bytes]]:
        self.calls.append(("saved", reference))
        image_id = self._resolve(reference)
        if image_id in self.archives:
            yield io.BytesIO(self.archives[image_id])
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w"):
            pass
        buffer.seek(0)
        yield buffer

    # --- build cache and builds --------------------------------------------------------

    def build_cache(self) -> list[CacheRecord]:
        return list(self.cache)

    def build_cache_ids(self, mentioning: str = "") -> list[str]:
        return [record.id for record in self.cache if mentioning in record.description]

    def build_records_since(self, before: set[str]) -> set[str]:
        return {record.id for record in self.cache if record.id not in before and "cached mount " not in record.description}

    def prune_build_cache(self, record_id: str | None = None) -> None:
        self.calls.append(("prune_build_cache", record_id))
        self.cache = [record for record in self.cache if record_id is not None and record.id != record_id]

    def build(self, request: BuildRequest, echo: bool = True) -> BuildResult:
        self.calls.append(("build", request))
        if self.build_exit != 0:
            return BuildResult(self.build_exit, None, self.build_tail)
        image_id = self.add_image(
            repr(sorted(request.build_args.items())) + repr(sorted(request.labels.items())), request.labels, request.platform
        )
        for tag in request.tags:
            self.tags[tag] = image_id
        return BuildResult(0, image_id, self.build_tail)

    def builder_versions(self) -> tuple[str, str]:
        return "v0.0.0-fake", "fake-engine"

    def imagetools_create(self, target: str, sources: Sequence[str]) -> None:
        self.calls.append(("imagetools_create", (target, tuple(sources))))
        self.registry[target] = image_id_for("index/" + ",".join(sources))

    def imagetools_manifest(self, reference: str) -> dict[str, Any]:
        return {"digest": self.registry[reference], "manifests": []}

    # --- containers ----------------------------------------------------------------------

    def run(
        self, image: str, command: Sequence[str], options: RunOptions | None = None, echo: bool = False, timeout: float | None = None
    ) -> RunResult:
        self.calls.append(("run", (image, tuple(command))))
        self.run_options.append(options or RunOptions())
        return self.answers.get(command[0], RunResult(0, ""))

    def output_of(self, image: str, command: Sequence[str], options: RunOptions | None = None) -> str:
        result = self.run(image, command, options)
        if result.exit_code != 0:
            raise TorchenvError(f"`{' '.join(command)}` failed in {image[:40]} (exit {result.exit_code}): {result.stderr}")
        return result.stdout

    def require(self) -> None:
        self.calls.append(("require", None))

    def data_root(self) -> Path | None:
        return None
