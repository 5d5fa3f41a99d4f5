"""What a registry holds under a reference, read with skopeo (which uses `docker login`'s
credentials): one platform's manifest, its digest and the image config; and, when asked,
its layers' files."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.pipeline import zstd_layout
from torchenv.pipeline.zstd_push import is_local, skopeo

INDEX_MEDIA_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int
    diff_id: str


@dataclass(frozen=True)
class Published:
    """One image as a registry holds it: REPOSITORY@DIGEST, its manifest and config."""

    repository: str
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def layers(self) -> list[Layer]:
        diff_ids = self.config.get("rootfs", {}).get("diff_ids", [])
        entries = self.manifest.get("layers", [])
        return [
            Layer(entry["mediaType"], entry["digest"], entry["size"], diff_ids[index] if index < len(diff_ids) else "")
            for index, entry in enumerate(entries)
        ]

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.manifest.get("annotations") or {})

    @property
    def zstd(self) -> bool:
        return all(layer.media_type == zstd_layout.ZSTD_LAYER_MEDIA_TYPE for layer in self.layers)


def repository_of(reference: str) -> str:
    """ "host:5000/repo:tag" and "host:5000/repo@sha256:..." -> "host:5000/repo"."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _inspect(reference: str, *options: str) -> bytes:
    tls = ["--tls-verify=false"] if is_local(reference) else []
    result = subprocess.run([skopeo(), "inspect", "--raw", *tls, *options, f"docker://{reference}"], capture_output=True)
    if result.returncode != 0:
        reason = engine.last_line(result.stderr.decode(errors="replace")) or "skopeo failed"
        raise TorchenvError(f"cannot read {reference} from its registry: {reason}; check the reference and `docker login`, then rerun")
    return result.stdout


def read(reference: str, platform: str) -> Published:
    """REFERENCE's manifest for PLATFORM (an index is followed to it) and its config."""
    repository = repository_of(reference)
    body = _inspect(reference)
    manifest = json.loads(body)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if manifest.get("mediaType") in INDEX_MEDIA_TYPES or "manifests" in manifest:
        os_name, _, architecture = platform.partition("/")
        chosen = [
            entry
            for entry in manifest.get("manifests", [])
            if entry.get("platform", {}).get("os") == os_name and entry.get("platform", {}).get("architecture") == architecture
        ]
        if not chosen:
            listed = sorted(f"{e.get('platform', {}).get('os')}/{e.get('platform', {}).get('architecture')}" for e in manifest["manifests"])
            lists = ", ".join(listed)
            raise TorchenvError(f"{reference} is an index without a {platform} image (it lists {lists}); name a platform it has")
        digest = chosen[0]["digest"]
        body = _inspect(f"{repository}@{digest}")
        manifest = json.loads(body)
    config = json.loads(_inspect(f"{repository}@{digest}", "--config"))
    return Published(repository, digest, manifest, config)


@contextmanager
def fetched(published: Published, work_dir: Path) -> Iterator[Path]:
    """PUBLISHED copied as it is into an OCI layout in a scratch folder (every blob)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetched-", dir=work_dir) as scratch:
        tls = ["--src-tls-verify=false"] if is_local(published.repository) else []
        target = Path(scratch) / "layout"
        command = [skopeo(), "copy", "--quiet", *tls, "--preserve-digests", f"docker://{published.reference}", f"oci:{target}:image"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            reason = engine.last_line(result.stderr) or "skopeo failed"
            raise TorchenvError(f"cannot fetch {published.reference}'s layers: {reason}; check `docker login`, then rerun")
        yield target


@contextmanager
def layer_stream(layout: Path, layer: Layer) -> Iterator[IO[bytes]]:
    """A fetched layer's tar, decompressed as it is read."""
    with open(layout / "blobs" / "sha256" / layer.digest.removeprefix("sha256:"), "rb") as blob:
        if layer.media_type.endswith("zstd"):
            with zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True) as reader:
                yield reader  # type: ignore[misc]
        elif layer.media_type.endswith("gzip"):
            with gzip.open(blob) as reader:
                yield reader  # type: ignore[misc]
        else:
            yield blob
