"""Small images in `docker save`'s two archive formats, for the zstd layout's unit tests."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile

from torchenv.engine import ImageFacts


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(body), 1700000000
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def text(megabytes: int, seed: int) -> bytes:
    """Compressible but not trivial: words drawn at random, more than one zstd job long."""
    chance = random.Random(seed)
    words = [bytes(chance.choices(b"abcdefghijklmnopqrstuvwxyz", k=chance.randint(2, 9))) for _ in range(5000)]
    out = bytearray()
    while len(out) < megabytes << 20:
        out += b" ".join(chance.choices(words, k=4096)) + b"\n"
    return bytes(out)


class Image:
    """Layers and a config whose digest is the image ID, as the engine holds them."""

    def __init__(self, layers: list[bytes]) -> None:
        self.layers = layers
        self.diff_ids = [sha256(body) for body in layers]
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": self.diff_ids}}).encode()
        self.id = sha256(self.config)

    def facts(self) -> ImageFacts:
        return ImageFacts(self.id, (), {}, tuple(self.diff_ids), "1000:1000", "", "linux", "amd64", 0, ())

    def archive(self, legacy: bool = False, without: int | None = None) -> bytes:
        """Docker 25's OCI-layout archive, or (LEGACY) the one older engines write; WITHOUT
        leaves one layer out."""
        members: dict[str, bytes] = {}
        for index, body in enumerate(self.layers):
            if index == without:
                continue
            name = f"{index:064x}/layer.tar" if legacy else f"blobs/sha256/{self.diff_ids[index][7:]}"
            members[name] = body
        members[f"{self.id[7:]}.json" if legacy else f"blobs/sha256/{self.id[7:]}"] = self.config
        members["manifest.json"] = json.dumps([{"Config": "...", "Layers": []}]).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, body in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                archive.addfile(info, io.BytesIO(body))
        return buffer.getvalue()
