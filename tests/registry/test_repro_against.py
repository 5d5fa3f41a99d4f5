"""`invoke repro --against REF` against the REAL registry on 127.0.0.1, through the command
surface: the image `invoke push` published is what this commit builds, digest for digest;
and an image with one file changed in one layer is told apart by that layer and that file.
The changed image is made here, in the registry, by hand (not by torchenv's code)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
import urllib.request
from collections.abc import Iterator

import pytest
import zstandard

from torchenv import engine
from torchenv.model.matrix import load_matrix
from torchenv.model.records import PushRecord
from torchenv.model.settings import Settings
from torchenv.pipeline import publish
from torchenv.pipeline.build import image_tag
from torchenv.pipeline.testrecords import passed_record

from ..helpers import ZSTD_LEVEL, invoke

VARIANT = "cu117"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHANGED_FILE = "torchenv_app/__init__.py"

pytestmark = pytest.mark.needs_variants(VARIANT)


@pytest.fixture(scope="module")
def pushed(local_registry: str, tmp_path_factory: pytest.TempPathFactory) -> PushRecord:
    """cu117 as `invoke push` publishes it (zstd at level 3, the fastest on 2 cores)."""
    settings = dataclasses.replace(Settings.load(), digests_file=tmp_path_factory.mktemp("digests") / "digests.json", zstd_level=ZSTD_LEVEL)
    image_id = engine.get().image_id(image_tag(load_matrix().get(VARIANT), settings))
    if image_id is None or passed_record(image_id, settings) is None:
        pytest.fail(f"{VARIANT} has not passed every test of tests/images in this run; push needs a passing test record", pytrace=False)
    return publish.push(VARIANT, load_matrix(), settings, local_registry)


def registry_get(url: str, accept: str = MANIFEST) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=60) as response:
        return response.read(), dict(response.headers)


def upload_blob(registry: str, repository: str, body: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    start = urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start, timeout=60) as response:
        location = response.headers["Location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    separator = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{separator}digest={digest}", data=body, method="PUT")
    put.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(put, timeout=300).close()
    return digest


def with_one_file_changed(registry: str, repository: str, digest: str, tag: str) -> tuple[int, str]:
    """Pushes, as TAG, the image at DIGEST with one byte added to the app's CHANGED_FILE:
    that layer recompressed, the config's diff ID for it replaced. Returns the layer's
    position (from 1) and the file's path."""
    manifest = json.loads(registry_get(f"http://{registry}/v2/{repository}/manifests/{digest}")[0])
    config = json.loads(registry_get(f"http://{registry}/v2/{repository}/blobs/{manifest['config']['digest']}", "*/*")[0])
    for index, layer in enumerate(manifest["layers"]):
        if layer["size"] > 50_000_000:
            continue  # the app's layer is small; torch's is not
        blob = registry_get(f"http://{registry}/v2/{repository}/blobs/{layer['digest']}", "*/*")[0]
        original = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
        changed, path = io.BytesIO(), None
        source, target = tarfile.open(fileobj=io.BytesIO(original)), tarfile.open(fileobj=changed, mode="w", format=tarfile.PAX_FORMAT)
        with source, target:
            for member in source.getmembers():
                data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
                if data is not None and member.name.endswith(CHANGED_FILE):
                    data, path = data + b"#", member.name
                    member.size = len(data)
                target.addfile(member, io.BytesIO(data) if data is not None else None)
        if path is None:
            continue
        body = changed.getvalue()
        compressed = zstandard.ZstdCompressor(level=3).compress(body)
        manifest["layers"][index] |= {"digest": upload_blob(registry, repository, compressed), "size": len(compressed)}
        config["rootfs"]["diff_ids"][index] = "sha256:" + hashlib.sha256(body).hexdigest()
        config_body = json.dumps(config).encode()
        manifest["config"] |= {"digest": upload_blob(registry, repository, config_body), "size": len(config_body)}
        put = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest).encode(), method="PUT")
        put.add_header("Content-Type", MANIFEST)
        urllib.request.urlopen(put, timeout=60).close()
        return index + 1, path
    raise AssertionError(f"no small layer of {digest} holds {CHANGED_FILE}")


@pytest.fixture
def no_compressed_layers() -> Iterator[None]:
    """The push's cache of compressed layers set aside, so that the rebuild's push
    compresses every layer again rather than reuse the blobs being compared."""
    cache = Settings.load().work_dir / "zstd-layers"
    aside = cache.with_name("zstd-layers.aside")
    shutil.rmtree(aside, ignore_errors=True)
    if cache.exists():
        cache.rename(aside)
    try:
        yield
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if aside.exists():
            aside.rename(cache)


def test_the_pushed_image_is_what_this_commit_builds_digest_for_digest(
    pushed: PushRecord, local_registry: str, no_compressed_layers: None
) -> None:
    reference = f"{pushed.repository}:{VARIANT}"
    result = invoke("repro", "--variant", VARIANT, "--against", reference, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    # The registry's own word for the digest under that tag, not torchenv's summary.
    _, headers = registry_get(f"http://{local_registry}/v2/{pushed.repository.split('/', 1)[1]}/manifests/{VARIANT}")
    assert headers["Docker-Content-Digest"] == pushed.digest
    assert f"identical: {pushed.digest}" in result.stdout


def test_an_image_with_one_file_changed_is_named_by_its_layer_and_that_file(pushed: PushRecord, local_registry: str) -> None:
    repository = pushed.repository.split("/", 1)[1]
    position, path = with_one_file_changed(local_registry, repository, pushed.digest, "one-file-changed")
    result = invoke("repro", "--variant", VARIANT, "--against", f"{pushed.repository}:one-file-changed", timeout=1200)
    assert result.returncode == 1, result.stdout + result.stderr
    layer_lines = [line for line in result.stdout.splitlines() if line.startswith("layer ")]
    assert len(layer_lines) == 1, result.stdout
    assert layer_lines[0].startswith(f"layer {position}: other files (") and layer_lines[0].endswith(": 1 paths differ"), result.stdout
    assert f"  {path}: file size=" in result.stdout
    config_lines = [line for line in result.stdout.splitlines() if line.startswith("config ")]
    assert not config_lines, "only the layer differs, not the config's fields"
    # BuildKit's progress goes to stderr too; the error is its one last line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("torchenv: error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]] and "is not what this commit builds for cu117" in errors[0], result.stderr


def test_a_reference_that_the_registry_lacks_is_one_line(local_registry: str) -> None:
    result = invoke("repro", "--variant", VARIANT, "--against", f"{local_registry}/torchenv:no-such-tag")
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()
    expected = f"torchenv: error: cannot read {local_registry}/torchenv:no-such-tag from its registry: "
    assert len(error) == 1 and error[0].startswith(expected), result.stderr
