"""Push and pull through a REAL registry (the distribution registry, Debian's
docker-registry) on 127.0.0.1: digests recorded and verified, mismatches refused,
failures in one line with no half state left behind."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.locking.locks import LOCK_DIR
from torchenv.model import platforms
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline import publish
from torchenv.pipeline.build import image_tag
from torchenv.pipeline.tagging import published_tags
from torchenv.pipeline.testrecords import passed_record

from .. import skips
from ..helpers import ZSTD_LEVEL, compose_run, free_port
from ..secret_scan import registry_files, scan_files
from .conftest import Keys, LocalRegistry

VARIANT = "cu117"

pytestmark = pytest.mark.needs_variants("cu117")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The real settings, but the digests land in a temporary file, not the committed one."""
    return dataclasses.replace(Settings.load(), digests_file=tmp_path / "digests.json")


@pytest.fixture
def tested_image(settings: Settings) -> str:
    tag = image_tag(load_matrix().get(VARIANT), settings)
    image_id = engine.get().image_id(tag)
    if image_id is None or passed_record(image_id, settings) is None:
        pytest.fail(f"{tag} has not passed every test of tests/images in this run; push needs a passing test record", pytrace=False)
    return image_id


def image_state() -> set[str]:
    return engine.get().references()


def test_push_refuses_an_image_without_a_passing_test_record(settings: Settings, tmp_path: Path, local_registry: str) -> None:
    untested = dataclasses.replace(settings, work_dir=tmp_path / "no-records")
    with pytest.raises(TorchenvError, match=r"has no passing test record; run `invoke test --variant cu117` first"):
        publish.push(VARIANT, load_matrix(), untested, local_registry)


def content(reference: str) -> tuple[list[str], dict[str, str]]:
    """What an image is, byte for byte: its layers (uncompressed digests) and its labels."""
    facts = engine.get().require_image(reference)
    return list(facts.layers), dict(facts.labels)


def layer_types(registry_address: str, repository: str, reference: str) -> set[str]:
    request = urllib.request.Request(
        f"http://{registry_address}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return {layer["mediaType"] for layer in json.load(response)["layers"]}


@pytest.mark.parametrize("compression", publish.COMPRESSIONS)
def test_push_to_a_registry_that_is_down_is_one_line_and_leaves_nothing(settings: Settings, tested_image: str, compression: str) -> None:
    before = image_state()
    with pytest.raises(TorchenvError) as caught:
        publish.push(VARIANT, load_matrix(), settings, f"127.0.0.1:{free_port()}", compression)
    message = str(caught.value)
    assert message.startswith("pushing 127.0.0.1:") and "check that the registry" in message and "\n" not in message
    assert image_state() == before
    assert not settings.digests_file.exists()


def test_pull_without_a_recorded_push_is_one_line(settings: Settings) -> None:
    with pytest.raises(TorchenvError, match=r"no pushed image of cu117 is recorded in .*digests.json; build it"):
        publish.pull(load_matrix().get(VARIANT), load_matrix(), settings)


def test_pull_refuses_an_image_built_from_another_lock(settings: Settings, tested_image: str, local_registry: str, tmp_path: Path) -> None:
    matrix = load_matrix()
    variant = matrix.get(VARIANT)
    # gzip (for clients older than Docker 23) goes through the engine's own push.
    record = publish.push(VARIANT, matrix, settings, local_registry, "gzip")
    assert layer_types(local_registry, settings.image_name, record.digest) == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    other_locks = tmp_path / "locks"
    other_locks.mkdir()
    (other_locks / f"{VARIANT}.txt").write_text((LOCK_DIR / f"{VARIANT}.txt").read_text() + "# edited\n")
    changed = dataclasses.replace(settings, lock_dir=other_locks)
    with pytest.raises(
        TorchenvError, match=r"refusing .*@sha256:[0-9a-f]{64}: io.torchenv.lock-sha256 is '[0-9a-f]{64}', expected '[0-9a-f]{64}'"
    ):
        publish.pull(variant, matrix, changed)
    assert engine.get().image_id(image_tag(variant, settings)) == tested_image, "an image that was already here must stay"
    assert publish.pull_first(variant, matrix, changed) is None


def cosign_statement(reference: str, public_key: Path, kind: str) -> dict[str, Any]:
    """The one attestation of KIND on REFERENCE, as cosign itself verifies it with PUBLIC_KEY."""
    verified = subprocess.run(
        [
            "cosign",
            "verify-attestation",
            "--key",
            str(public_key),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--type",
            kind,
            reference,
        ],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    (statement,) = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in verified.stdout.splitlines()]
    return statement


def test_round_trip_push_sign_delete_pull_verify_train(
    settings: Settings, tested_image: str, registry_server: LocalRegistry, keys: Keys, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    local_registry = registry_server.address
    matrix = load_matrix()
    variant = matrix.get(VARIANT)
    # zstd at level 3: the same push, pull and layers as at the default level, faster on
    # a 2-core machine (the level is only a parameter of the compressor). Signed
    # with the run's key pair, and pulled back by a pull that checks against its public key.
    settings = dataclasses.replace(settings, zstd_level=ZSTD_LEVEL, sign_key=str(keys.ours.private), verify_key=str(keys.ours.public))
    record = publish.push(VARIANT, matrix, settings, local_registry)
    assert record.signed
    # cosign itself: the signature, and a provenance naming this lock and this commit (read
    # from the files and from git here, not from torchenv).
    signed = f"{local_registry}/{settings.image_name}@{record.digest}"
    check = subprocess.run(
        ["cosign", "verify", "--key", str(keys.ours.public), "--insecure-ignore-tlog=true", "--allow-http-registry", signed],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    claimed = cosign_statement(signed, keys.ours.public, "slsaprovenance1")["predicate"]["buildDefinition"]
    assert claimed["externalParameters"]["lock"]["sha256"] == hashlib.sha256((LOCK_DIR / f"{VARIANT}.txt").read_bytes()).hexdigest()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert claimed["externalParameters"]["source"]["digest"]["gitCommit"] == commit
    assert claimed["internalParameters"]["buildArgs"]["VARIANT"] == VARIANT
    attested_sbom = cosign_statement(signed, keys.ours.public, "cyclonedx")["predicate"]
    assert record.digest.startswith("sha256:") and record.platforms[variant.platform].image_id == tested_image
    assert VARIANT in record.tags and "latest" in record.tags
    # zstd by default, under every tag (the same manifest), and no alias left locally.
    assert record.compression == "zstd"
    assert layer_types(local_registry, settings.image_name, record.digest) == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    for tag in record.tags:
        assert publish.index_manifest(f"{local_registry}/{settings.image_name}:{tag}")["digest"] == record.digest
    assert not [line for line in image_state() if line.startswith(local_registry)]
    assert json.loads(settings.digests_file.read_text())[VARIANT]["digest"] == record.digest

    # Gone locally, then back from the registry by digest, verified and tagged again: the
    # same layers and labels, and the same image ID (the push sends the config as it is).
    tested_content = content(tested_image)
    engine.get().remove_image(tested_image, force=True)
    assert engine.get().image_id(image_tag(variant, settings)) is None
    reference = publish.pull(variant, matrix, settings)
    assert reference == f"{local_registry}/{settings.image_name}@{record.digest}"
    assert content(image_tag(variant, settings)) == tested_content
    assert engine.get().image_id(image_tag(variant, settings)) == tested_image
    # The SBOM that travelled beside the image is the one inside it.
    inside = engine.get().output_of(image_tag(variant, settings), ["cat", "/opt/torchenv/sbom.cdx.json"])
    assert json.loads(inside) == attested_sbom

    # compose runs the pulled image by its registry reference.
    run = compose_run(tmp_path, "train", TORCHENV_IMAGE=reference)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["loss_fell"] is True

    # A prebuilt image with the current lock is used instead of a build.
    assert publish.pull_first(variant, matrix, settings) == reference

    # Neither the key nor its password reached the output, the records or the registry
    # (whose signatures, attestations and manifests are scanned; tests/secret_scan.py).
    output = capfd.readouterr()
    needles = [keys.password.encode(), keys.ours.private_body()]
    written = [("output", (output.out + output.err).encode()), ("digests", settings.digests_file.read_bytes())]
    found = scan_files([*written, *registry_files(registry_server.data)], needles)
    assert not found.needles and not found.unexpected_credentials(), found


MULTI_PLATFORM = "cpu"


@pytest.fixture
def tested_arm64_image(settings: Settings) -> str:
    if not platforms.emulation_enabled(platforms.ARM64):
        skips.no_emulation(f"{platforms.ARM64} binaries cannot run on this {platforms.host_platform()} host")
    tag = image_tag(load_matrix().get(MULTI_PLATFORM, platforms.ARM64), settings)
    image_id = engine.get().image_id(tag)
    if image_id is None or passed_record(image_id, settings) is None:
        pytest.fail(f"{tag} has not passed every test of tests/images in this run; push needs a passing test record", pytrace=False)
    return image_id


def listed_platforms(reference: str) -> list[str]:
    manifest = publish.index_manifest(reference)
    return sorted(f"{entry['platform']['os']}/{entry['platform']['architecture']}" for entry in manifest["manifests"])


@pytest.mark.needs_variants("cu117", "cpu")
@pytest.mark.needs_platforms(platforms.ARM64)
def test_multi_platform_variant_is_pushed_as_one_index(
    settings: Settings, tested_arm64_image: str, local_registry: str, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    """cpu's arm64 image (the one built here; its amd64 half needs the PyTorch index) goes
    out as an index under the variant's tags, the index and the image each signed, the image
    with its attestations; a platform-specific pull gets it, and `invoke pull` of the host's
    platform says in one line that the index lacks it."""
    matrix = load_matrix()
    arm64 = matrix.get(MULTI_PLATFORM, platforms.ARM64)
    settings = dataclasses.replace(settings, sign_key=str(keys.ours.private), verify_key=str(keys.ours.public))
    record = publish.push(MULTI_PLATFORM, matrix, settings, local_registry)
    assert "is not built here for linux/amd64" in capsys.readouterr().out
    repository = record.repository
    for digest in (record.digest, record.platforms[platforms.ARM64].digest):
        check = subprocess.run(
            [
                "cosign",
                "verify",
                "--key",
                str(keys.ours.public),
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                f"{repository}@{digest}",
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
    claimed = cosign_statement(f"{repository}@{record.platforms[platforms.ARM64].digest}", keys.ours.public, "slsaprovenance1")
    assert claimed["predicate"]["buildDefinition"]["externalParameters"]["platform"] == platforms.ARM64
    assert set(record.platforms) == {platforms.ARM64} and record.platforms[platforms.ARM64].image_id == tested_arm64_image
    # The same tag scheme as a one-platform push, without the platform: names.tag_names.
    assert list(record.tags) == published_tags(tested_arm64_image, matrix.get(MULTI_PLATFORM), matrix)
    assert MULTI_PLATFORM in record.tags and f"{arm64.torch_release}-{MULTI_PLATFORM}" in record.tags
    assert listed_platforms(f"{repository}:{MULTI_PLATFORM}") == [platforms.ARM64]
    assert publish.index_manifest(f"{repository}@{record.digest}")["digest"] == record.digest

    # docker pull --platform of the variant's tag: the arm64 image, byte for byte.
    tested_content = content(tested_arm64_image)
    engine.get().remove_image(tested_arm64_image, force=True)
    engine.get().pull(f"{repository}:{MULTI_PLATFORM}", platforms.ARM64)
    architecture = engine.get().require_image(f"{repository}:{MULTI_PLATFORM}").architecture
    assert architecture == "arm64" and content(f"{repository}:{MULTI_PLATFORM}") == tested_content
    engine.get().remove_image(f"{repository}:{MULTI_PLATFORM}")

    # invoke pull --platform linux/arm64: by digest, checked, tagged as a local build.
    reference = publish.pull(arm64, matrix, settings)
    assert reference == f"{repository}@{record.platforms[platforms.ARM64].digest}"
    assert content(image_tag(arm64, settings)) == tested_content
    with pytest.raises(
        TorchenvError, match=r"the pushed cpu has no linux/amd64 image, only linux/arm64; pull one of those with --platform"
    ):
        publish.pull(matrix.get(MULTI_PLATFORM, platforms.AMD64), matrix, settings)


@pytest.mark.needs_platforms(*platforms.SUPPORTED)
def test_an_index_lists_both_platforms_and_each_pull_gets_its_own(settings: Settings, local_registry: str) -> None:
    """The index mechanism with both platforms, on the two Debian bases this project
    builds (amd64 native, arm64 emulated): both listed, each platform's pull gets its own."""
    from torchenv.pipeline.base import ensure_base

    repository = f"{local_registry}/torchenv-base"
    sources = []
    for platform in platforms.SUPPORTED:
        image_id = engine.get().require_image(ensure_base("bookworm", settings, platform)).id
        digest = publish.push_tags(image_id, [f"{repository}:bookworm-{platforms.arch(platform)}"], local_registry, settings, "gzip")
        sources.append(f"{repository}@{digest}")
    digest = publish.make_index(repository, ["bookworm"], sources)
    assert listed_platforms(f"{repository}@{digest}") == sorted(platforms.SUPPORTED)
    for platform in platforms.SUPPORTED:
        engine.get().pull(f"{repository}:bookworm", platform)
        found = engine.get().require_image(f"{repository}:bookworm").platform
        engine.get().remove_image(f"{repository}:bookworm")
        assert found == platform
