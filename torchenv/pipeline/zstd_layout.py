"""An engine image as an OCI image layout with zstd layers, ready to upload as it is.

torchenv compresses the layers itself, with the libzstd that the pinned `zstandard`
package carries, in zstd's multi-threaded mode. That mode's output does not depend on the
number of threads or on how the input is fed, so the same build gives the same blobs, and
so the same manifest digest, on every host: that is what `invoke repro --against` checks.
The image's config goes out byte for byte as the engine holds it, so the image pulled back
has the local image's ID. Compressed layers are kept in a cache by diff ID, level and
libzstd version: pushing a second variant, or the same image again, recompresses nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from torchenv import engine
from torchenv.errors import TorchenvError

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
ZSTD_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
GZIP_LAYER_MEDIA_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")
# Manifest annotations that say how the layers were compressed, so that a rebuild can be
# compressed the same way and compared digest for digest.
LEVEL_ANNOTATION = "io.torchenv.zstd.level"
LIBRARY_ANNOTATION = "io.torchenv.zstd.library"
# The name the layout's index gives its one image (skopeo's `oci:DIR:NAME`).
REFERENCE_NAME = "image"
# Cached layers not used by any push for this long are removed.
CACHE_DAYS = 7
# `docker save` names blobs by digest from Docker 25 on; older engines write <id>/layer.tar.
_BLOB_NAME = re.compile(r"^blobs/sha256/(?P<hex>[0-9a-f]{64})$")
_CHUNK = 1 << 20


def library() -> str:
    """The compressor, as the manifest records it: "libzstd 1.5.7"."""
    return "libzstd " + ".".join(str(part) for part in zstandard.ZSTD_VERSION)


def workers() -> int:
    """Compression threads: one per core. At least one: libzstd's multi-threaded mode,
    whose output is the same for any number of threads; 0 would select its single-threaded
    mode, whose output differs."""
    return max(1, os.cpu_count() or 1)


def compressor(level: int) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=level, threads=workers())


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: Path


@dataclass(frozen=True)
class Layout:
    """An OCI image layout holding one image; `oci:{path}:{REFERENCE_NAME}` to skopeo."""

    path: Path
    manifest_digest: str
    manifest: dict[str, object]

    @property
    def source(self) -> str:
        return f"oci:{self.path}:{REFERENCE_NAME}"


class _Hashing:
    """A file object that hashes and counts what is written through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target, self.sha256, self.size = target, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def compress(source: IO[bytes], size: int, target: IO[bytes], level: int) -> tuple[str, Blob]:
    """Compresses SOURCE (SIZE bytes) into TARGET; returns the input's digest and the
    output's (the blob's path is left empty)."""
    uncompressed = hashlib.sha256()
    output = _Hashing(target)
    with compressor(level).stream_writer(output, size=size, closefd=False) as writer:  # type: ignore[arg-type]
        while chunk := source.read(_CHUNK):
            uncompressed.update(chunk)
            writer.write(chunk)
    return "sha256:" + uncompressed.hexdigest(), Blob("sha256:" + output.sha256.hexdigest(), output.size, Path())


class LayerCache:
    """Compressed layers by diff ID, level and libzstd version, in a folder of the work dir."""

    def __init__(self, folder: Path, level: int) -> None:
        self.folder, self.level = folder, level
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, diff_id: str) -> Path:
        version = "".join(str(part) for part in zstandard.ZSTD_VERSION)
        return self.folder / f"{diff_id.removeprefix('sha256:')}-level{self.level}-libzstd{version}.zst"

    def get(self, diff_id: str) -> Blob | None:
        path = self._path(diff_id)
        meta = _meta(path)
        try:
            digest = json.loads(meta.read_text())["digest"]
        except (OSError, ValueError, KeyError):
            return None  # not cached, or its record half-written: compress it again
        # A cached blob is checked before it is used again: a truncated one is made anew.
        sha256 = hashlib.sha256()
        try:
            with open(path, "rb") as blob:
                while chunk := blob.read(_CHUNK):
                    sha256.update(chunk)
        except FileNotFoundError:
            return None
        if "sha256:" + sha256.hexdigest() != digest:
            path.unlink()
            return None
        os.utime(path)
        os.utime(meta)
        return Blob(digest, path.stat().st_size, path)

    def put(self, diff_id: str, written: Path, blob: Blob) -> Blob:
        path = self._path(diff_id)
        os.replace(written, path)
        record = path.with_name(f"partial-{path.name}.json")
        record.write_text(json.dumps({"digest": blob.digest, "diff_id": diff_id}))
        os.replace(record, _meta(path))
        return Blob(blob.digest, blob.size, path)

    def config(self, image_id: str) -> bytes | None:
        """The image's config as the last push read it (its digest is the image ID)."""
        path = self.folder / f"{image_id.removeprefix('sha256:')}.config"
        with contextlib.suppress(FileNotFoundError):
            body = path.read_bytes()
            if "sha256:" + hashlib.sha256(body).hexdigest() == image_id:
                os.utime(path)
                return body
        return None

    def put_config(self, image_id: str, body: bytes) -> None:
        (self.folder / f"{image_id.removeprefix('sha256:')}.config").write_bytes(body)

    def scratch(self) -> IO[bytes]:
        return tempfile.NamedTemporaryFile(dir=self.folder, prefix="partial-", delete=False)

    def prune(self, keep: set[Path]) -> None:
        cutoff = time.time() - CACHE_DAYS * 86400
        for path in self.folder.iterdir():
            owner = path.with_suffix(".zst") if path.suffix == ".json" else path
            # Another push may be writing its partial- files now: only old ones are left over.
            with contextlib.suppress(FileNotFoundError):
                if owner not in keep and path.stat().st_mtime < cutoff:
                    path.unlink()


def _meta(blob: Path) -> Path:
    return blob.with_suffix(".json")


def _layers_from_save(image_id: str, wanted: set[str], cache: LayerCache) -> tuple[bytes, dict[str, Blob]]:
    """Reads the `docker save` stream once: the config, and every wanted layer compressed
    into the cache as it streams by."""
    config: bytes | None = None
    found: dict[str, Blob] = {}
    with engine.get().saved(image_id) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not member.isfile():
                continue
            named = _BLOB_NAME.match(member.name)
            digest = "sha256:" + named["hex"] if named else None
            if digest is not None and digest != image_id and digest not in wanted:
                continue
            data = archive.extractfile(member)
            assert data is not None
            if digest == image_id or member.name == image_id.removeprefix("sha256:") + ".json":
                config = data.read()
                continue
            with cache.scratch() as scratch:
                diff_id, blob = compress(data, member.size, scratch, cache.level)
            if diff_id in wanted and diff_id not in found:
                found[diff_id] = cache.put(diff_id, Path(scratch.name), blob)
            else:
                Path(scratch.name).unlink()
    if config is None or "sha256:" + hashlib.sha256(config).hexdigest() != image_id:
        raise TorchenvError(
            f"the engine's archive of {image_id[:19]} holds no config with its ID (an engine with the containerd image store?): "
            "the zstd push needs the classic image store; push with --compression gzip"
        )
    return config, found


def write(image_id: str, target: Path, level: int, cache_folder: Path) -> Layout:
    """The image IMAGE_ID as an OCI layout in TARGET (which must not exist), its layers
    compressed at LEVEL; blobs are hard links into the cache where it shares the disk."""
    facts = engine.get().require_image(image_id)
    diff_ids = list(facts.layers)
    cache = LayerCache(cache_folder, level)
    blobs = {diff_id: blob for diff_id in set(diff_ids) if (blob := cache.get(diff_id)) is not None}
    config = cache.config(image_id)
    if config is None or blobs.keys() != set(diff_ids):
        config, compressed = _layers_from_save(image_id, set(diff_ids) - blobs.keys(), cache)
        cache.put_config(image_id, config)
        blobs |= compressed
    missing = [diff_id for diff_id in diff_ids if diff_id not in blobs]
    if missing:
        raise TorchenvError(
            f"the engine's archive of {image_id[:19]} lacks layer {missing[0][:19]} (an engine with the containerd image store?): "
            "the zstd push needs the classic image store; push with --compression gzip"
        )
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": image_id, "size": len(config)},
        "layers": [{"mediaType": ZSTD_LAYER_MEDIA_TYPE, "digest": blobs[d].digest, "size": blobs[d].size} for d in diff_ids],
        "annotations": {LEVEL_ANNOTATION: str(level), LIBRARY_ANNOTATION: library()},
    }
    folder = target / "blobs" / "sha256"
    folder.mkdir(parents=True)
    (folder / image_id.removeprefix("sha256:")).write_bytes(config)
    for blob in blobs.values():
        _link(blob.path, folder / blob.digest.removeprefix("sha256:"))
    manifest_digest = write_index(target, manifest)
    cache.prune({blob.path for blob in blobs.values()})
    return Layout(target, manifest_digest, manifest)


def write_index(target: Path, manifest: dict[str, object]) -> str:
    """MANIFEST into the layout in TARGET (whose blobs folder exists) as its one image,
    named REFERENCE_NAME; returns the manifest's digest."""
    body = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (target / "blobs" / "sha256" / manifest_digest.removeprefix("sha256:")).write_bytes(body)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": len(body),
                "annotations": {"org.opencontainers.image.ref.name": REFERENCE_NAME},
            }
        ],
    }
    (target / "index.json").write_text(json.dumps(index))
    (target / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return manifest_digest


def _link(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        with open(source, "rb") as reading, open(target, "wb") as writing:
            while chunk := reading.read(_CHUNK):
                writing.write(chunk)


@contextlib.contextmanager
def written(image_id: str, work_dir: Path, level: int) -> Iterator[Layout]:
    """`write` into a scratch folder of WORK_DIR that is removed when the block ends."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="push-", dir=work_dir) as scratch:
        yield write(image_id, Path(scratch) / "layout", level, work_dir / "zstd-layers")
