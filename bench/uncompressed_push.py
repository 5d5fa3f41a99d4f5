"""The image pushed with its layers uncompressed, as the engine saves them: what an engine
registers with nothing to decode. Pull-to-ready of this push is the engine's own floor
for the image's content (bench/pull_ready.py); no product path pushes this way.

The layers keep their digests (an uncompressed layer's digest is its diff ID), and skopeo
sends the OCI layout as it is (--preserve-digests), so nothing is compressed on the way.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from torchenv import engine
from torchenv.pipeline import zstd_layout, zstd_push

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20


class NotPushed(Exception):
    """The uncompressed image could not be pushed (Docker before 25, whose `docker save`
    does not name layers by digest, or skopeo refused); the reason is one line."""


@dataclass(frozen=True)
class LayerFacts:
    """One layer as the engine registers it: its diff ID, its bytes, its tar entries."""

    diff_id: str
    bytes: int
    entries: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def entries(layer: Path) -> int:
    with tarfile.open(layer, mode="r:") as archive:
        return sum(1 for _ in archive)


def write_layout(image_id: str, target: Path) -> list[LayerFacts]:
    """IMAGE_ID as an OCI layout in TARGET with its layers as the engine saves them."""
    diff_ids = list(engine.get().require_image(image_id).layers)
    blobs = target / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    wanted = {digest.removeprefix("sha256:") for digest in [*diff_ids, image_id]}
    with engine.get().saved(image_id) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            name = member.name.removeprefix("blobs/sha256/")
            if member.isfile() and name in wanted and not (blobs / name).exists():
                data = archive.extractfile(member)
                assert data is not None
                with open(blobs / name, "wb") as out:
                    shutil.copyfileobj(data, out, _CHUNK)
    missing = [digest for digest in [*diff_ids, image_id] if not (blobs / digest.removeprefix("sha256:")).exists()]
    if missing:
        raise NotPushed(f"the engine's `docker save` does not name layer {missing[0][:19]} by its digest (Docker 25 or later does)")
    config = (blobs / image_id.removeprefix("sha256:")).read_bytes()
    layers = [LayerFacts(digest, (path := blobs / digest.removeprefix("sha256:")).stat().st_size, entries(path)) for digest in diff_ids]
    manifest = {
        "schemaVersion": 2,
        "mediaType": zstd_layout.MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": zstd_layout.CONFIG_MEDIA_TYPE, "digest": image_id, "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.diff_id, "size": layer.bytes} for layer in layers],
    }
    zstd_layout.write_index(target, manifest)
    return layers


def push(image_id: str, reference: str, work: Path) -> list[LayerFacts]:
    """IMAGE_ID pushed uncompressed to REFERENCE on a registry on 127.0.0.1; the layout is
    written under WORK and removed after. Returns its layers, bottom first."""
    target = work / "uncompressed-layout"
    try:
        layers = write_layout(image_id, target)
        command = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests", f"oci:{target}:{zstd_layout.REFERENCE_NAME}"]
        pushed = subprocess.run([zstd_push.skopeo(), *command, f"docker://{reference}"], capture_output=True, text=True)
        if pushed.returncode != 0:
            raise NotPushed(f"skopeo could not push the uncompressed image: {engine.last_line(pushed.stderr)}")
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return layers
