import json
import os
from pathlib import Path

import pytest
import zstandard

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.pipeline import zstd_layout

from .fake_engine import FakeEngine
from .zstd_images import Image, layer, sha256, text


@pytest.fixture(scope="module")
def image() -> Image:
    return Image([layer({"etc/os-release": b"Debian\n"}), layer({"opt/venv/lib/big.so": text(12, seed=1)}), layer({})])


def fake(image: Image, **archive_options: object) -> FakeEngine:
    docker = FakeEngine()
    docker.images[image.id] = image.facts()
    docker.archives[image.id] = image.archive(**archive_options)  # type: ignore[arg-type]
    return docker


def write(docker: FakeEngine, image: Image, tmp_path: Path, name: str, level: int = 3, cache: str = "cache") -> zstd_layout.Layout:
    with engine.use(docker):
        return zstd_layout.write(image.id, tmp_path / name, level, tmp_path / cache)


def test_the_layout_holds_the_config_byte_for_byte_and_each_layer_in_zstd(image: Image, tmp_path: Path) -> None:
    layout = write(fake(image), image, tmp_path, "out", level=5)
    blobs = tmp_path / "out" / "blobs" / "sha256"
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    body = (blobs / index["manifests"][0]["digest"][7:]).read_bytes()
    assert sha256(body) == layout.manifest_digest == index["manifests"][0]["digest"]
    manifest = json.loads(body)
    assert manifest["config"] == {"mediaType": zstd_layout.CONFIG_MEDIA_TYPE, "digest": image.id, "size": len(image.config)}
    assert (blobs / image.id[7:]).read_bytes() == image.config
    assert [entry["mediaType"] for entry in manifest["layers"]] == [zstd_layout.ZSTD_LAYER_MEDIA_TYPE] * 3
    for entry, original in zip(manifest["layers"], image.layers, strict=True):
        blob = (blobs / entry["digest"][7:]).read_bytes()
        assert (sha256(blob), len(blob)) == (entry["digest"], entry["size"])
        assert zstandard.ZstdDecompressor().decompress(blob) == original
    assert manifest["annotations"] == {zstd_layout.LEVEL_ANNOTATION: "5", zstd_layout.LIBRARY_ANNOTATION: zstd_layout.library()}
    assert layout.source == f"oci:{tmp_path / 'out'}:image"


def test_the_digest_is_the_same_for_any_number_of_threads_and_either_archive_format(
    image: Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = set()
    for threads, legacy in ((1, False), (4, False), (2, True)):
        monkeypatch.setattr(os, "cpu_count", lambda threads=threads: threads)
        digests.add(write(fake(image, legacy=legacy), image, tmp_path, f"out-{threads}", cache=f"cache-{threads}").manifest_digest)
    assert len(digests) == 1
    single_threaded = zstandard.ZstdCompressor(level=3, threads=0).compress(image.layers[1])
    manifest = json.loads((tmp_path / "out-1" / "blobs" / "sha256" / digests.pop()[7:]).read_bytes())
    assert manifest["layers"][1]["digest"] != sha256(single_threaded), "libzstd's single-threaded mode would tie the digest to the host"


def test_a_second_push_of_the_same_image_reads_nothing_from_the_engine(image: Image, tmp_path: Path) -> None:
    docker = fake(image)
    first = write(docker, image, tmp_path, "one")
    second = write(docker, image, tmp_path, "two")
    assert second.manifest_digest == first.manifest_digest
    assert [call for call in docker.calls if call[0] == "saved"] == [("saved", image.id)]
    assert write(docker, image, tmp_path, "three", level=4).manifest_digest != first.manifest_digest


def test_a_damaged_cached_layer_is_compressed_again(image: Image, tmp_path: Path) -> None:
    docker = fake(image)
    first = write(docker, image, tmp_path, "one")
    cached = max((tmp_path / "cache").glob("*.zst"), key=lambda path: path.stat().st_size)
    cached.write_bytes(cached.read_bytes()[:100])
    assert write(docker, image, tmp_path, "two").manifest_digest == first.manifest_digest
    assert len([call for call in docker.calls if call[0] == "saved"]) == 2


def test_an_archive_that_lacks_a_layer_is_one_line_and_writes_no_layout(image: Image, tmp_path: Path) -> None:
    with pytest.raises(
        TorchenvError,
        match=r"^the engine's archive of sha256:\w+ lacks layer sha256:\w+ \(.*\): the zstd push needs the classic image store; push with ",
    ):
        write(fake(image, without=1), image, tmp_path, "out")
    assert not (tmp_path / "out").exists()


def test_a_cached_layer_whose_blob_is_gone_is_compressed_again(image: Image, tmp_path: Path) -> None:
    docker = fake(image)
    first = write(docker, image, tmp_path, "one")
    for blob in (tmp_path / "cache").glob("*.zst"):
        blob.unlink()
    assert write(docker, image, tmp_path, "two").manifest_digest == first.manifest_digest
