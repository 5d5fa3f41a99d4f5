"""Signatures and attestations through the REAL registry on 127.0.0.1 and the real cosign,
with key pairs made for the run, on a small image that carries cu117's identity labels
(no torch needed): one signed as `invoke push` signs is accepted by `invoke pull`; an
unsigned one, one signed by another key, one whose provenance names another lock and one
whose attestation was altered after signing are refused in one line, with nothing pulled
or tagged. cosign itself, not torchenv's reading of it, confirms what the push left."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import BuildRequest
from torchenv.errors import TorchenvError
from torchenv.locking import sbom, wheels
from torchenv.locking.locks import LOCK_DIR, locked_packages, read_lock
from torchenv.model import names, provenance
from torchenv.model.matrix import load_matrix
from torchenv.model.names import Label
from torchenv.model.provenance import BuildFacts
from torchenv.model.records import PlatformPush, PushRecord
from torchenv.model.settings import Settings
from torchenv.model.trust import Signer
from torchenv.pipeline import attest, git, publish

from ..helpers import invoke
from ..secret_scan import registry_files, scan_files
from .conftest import Keys, LocalRegistry

VARIANT = "cu117"
BASE_PACKAGES = "base-files 12.4+deb12u11 amd64\nlibc6 2.36-9+deb12u10 amd64\n"


@pytest.fixture(scope="module")
def look_alike(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A two-file image with cu117's identity labels (its committed lock's hash) and this
    commit as its revision, built by BuildKit like any variant."""
    variant = load_matrix().get(VARIANT)
    lock = read_lock(variant, LOCK_DIR)
    assert lock is not None
    context = tmp_path_factory.mktemp("look-alike")
    (context / "hello.txt").write_text("not torch\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    labels = {**names.identity_labels(variant, lock.sha256), Label.REVISION: git.head() or "unknown", Label.SBOM: sbom.IMAGE_PATH}
    result = engine.get().build(BuildRequest(context=context, platform=variant.platform, labels=labels), echo=False)
    assert result.image_id, "\n".join(result.tail)
    return result.image_id


def facts(lock_sha256: str) -> BuildFacts:
    variant = load_matrix().get(VARIANT)
    return BuildFacts(
        variant=VARIANT,
        platform=variant.platform,
        matrix_entry={"name": VARIANT},
        source_url="https://github.com/torchenv/torchenv",
        revision=git.head() or "unknown",
        lock_path="images/locks/cu117.txt",
        lock_sha256=lock_sha256,
        base_image="torchenv-base:bookworm",
        base_image_id="sha256:" + "1" * 64,
        base_packages_sha256=hashlib.sha256(BASE_PACKAGES.encode()).hexdigest(),
        build_args={"VARIANT": VARIANT},
        target=names.RUNTIME_STAGE,
        buildkit="v0.0.0-test",
        engine="test",
        builder_id="urn:torchenv:test",
        started="2026-12-02T00:00:00Z",
        finished="2026-12-02T00:00:01Z",
    )


def evidence(lock_sha256: str | None = None) -> attest.Evidence:
    variant = load_matrix().get(VARIANT)
    lock = read_lock(variant, LOCK_DIR)
    assert lock is not None
    document = sbom.image_sbom(variant, lock, BASE_PACKAGES, wheels.pypi_simple_url(), None)
    return attest.Evidence(facts(lock_sha256 or lock.sha256), document)


@dataclasses.dataclass(frozen=True)
class Pushed:
    settings: Settings
    reference: str
    digest: str


def push_look_alike(case: str, image: str, registry: str, tmp_path: Path, sign: Signer | None, proof: attest.Evidence) -> Pushed:
    """The look-alike pushed to its own repository, signed and attested if SIGN, and
    recorded in a digests file as `invoke push` records it."""
    settings = dataclasses.replace(Settings.load(), digests_file=tmp_path / "digests.json", image_name=f"torchenv-signing-{case}")
    repository = f"{registry}/{settings.image_name}"
    after = (lambda digest: attest.sign_and_attest(f"{repository}@{digest}", sign, proof)) if sign else None
    digest = publish.push_tags(image, [f"{repository}:{VARIANT}"], registry, settings, "zstd", after)
    platform = load_matrix().get(VARIANT).platform
    record = PushRecord(
        registry, repository, digest, (VARIANT,), "zstd", {platform: PlatformPush(digest, image, "", git.head() or "")}, True
    )
    publish.write_digest(VARIANT, record, settings)
    return Pushed(settings, f"{repository}@{digest}", digest)


def assert_refused(pushed: Pushed, keys: Keys, reason: str) -> None:
    checking = dataclasses.replace(pushed.settings, verify_key=str(keys.ours.public))
    matrix = load_matrix()
    with pytest.raises(TorchenvError) as caught:
        publish.pull(matrix.get(VARIANT), matrix, checking)
    message = str(caught.value)
    assert message.startswith(f"refusing {pushed.reference}: ") and "nothing was pulled or tagged" in message, message
    assert reason in message, message
    assert "\n" not in message and keys.password not in message
    assert engine.get().image_id(pushed.reference) is None, "nothing may be pulled"
    assert not engine.get().references(pushed.settings.image_name), "nothing may be tagged"


def cosign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cosign", *args, "--allow-http-registry"], capture_output=True, text=True)


def test_a_signed_image_is_accepted_and_cosign_itself_verifies_what_the_push_left(
    look_alike: str, local_registry: str, keys: Keys, tmp_path: Path
) -> None:
    pushed = push_look_alike("good", look_alike, local_registry, tmp_path, Signer(str(keys.ours.private)), evidence())
    # cosign itself, with the public key: the signature, and both attestations about this digest.
    signature = cosign("verify", "--key", str(keys.ours.public), "--insecure-ignore-tlog=true", pushed.reference)
    assert signature.returncode == 0, signature.stderr
    lock_text = (LOCK_DIR / f"{VARIANT}.txt").read_text()
    for kind, predicate_type in (
        (provenance.PROVENANCE_ATTESTATION, provenance.PREDICATE_TYPE),
        ("cyclonedx", "https://cyclonedx.org/bom"),
    ):
        verified = cosign(
            "verify-attestation", "--key", str(keys.ours.public), "--insecure-ignore-tlog=true", "--type", kind, pushed.reference
        )
        assert verified.returncode == 0, verified.stderr
        (statement,) = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in verified.stdout.splitlines()]
        assert statement["predicateType"] == predicate_type
        assert statement["subject"][0]["digest"]["sha256"] == pushed.digest.removeprefix("sha256:")
        if kind == provenance.PROVENANCE_ATTESTATION:
            lock = statement["predicate"]["buildDefinition"]["externalParameters"]["lock"]
            assert lock["sha256"] == hashlib.sha256(lock_text.encode()).hexdigest()
        else:
            assert sbom.schema_errors(json.dumps(statement["predicate"])) is None
    # The other key verifies none of it.
    assert cosign("verify", "--key", str(keys.theirs.public), "--insecure-ignore-tlog=true", pushed.reference).returncode != 0

    # What `invoke pull` and `invoke verify-image` check, read from the tag: the same digest,
    # the provenance's lock, an SBOM of every locked package and more. (The pull of a signed
    # image through to its tags is the round trip's, tests/registry/test_push_pull.py: a
    # look-alike has no torch to tag by.)
    checking = dataclasses.replace(pushed.settings, verify_key=str(keys.ours.public))
    matrix = load_matrix()
    trust = checking.trust()
    assert trust is not None
    verified = publish.verify_reference(
        f"{local_registry}/{checking.image_name}:{VARIANT}", matrix, checking, trust, matrix.get(VARIANT).platform
    )
    assert verified.reference == pushed.reference
    assert verified.claims.lock_sha256 == hashlib.sha256(lock_text.encode()).hexdigest()
    lock = read_lock(matrix.get(VARIANT), LOCK_DIR)
    # Every locked package and every Debian package of the base, at least.
    assert lock is not None and verified.sbom_components >= len(locked_packages(lock)) + len(BASE_PACKAGES.splitlines())
    assert engine.get().image_id(pushed.reference) is None, "checking pulls nothing"

    # The same through the command surface, with each key.
    tag = f"{local_registry}/{checking.image_name}:{VARIANT}"
    accepted = invoke("verify-image", tag, "--key", str(keys.ours.public))
    assert accepted.returncode == 0, accepted.stderr
    assert f"torchenv: {pushed.reference} is signed by the key {keys.ours.public}; its provenance says:" in accepted.stdout
    assert f"lock       sha256:{verified.claims.lock_sha256}" in accepted.stdout
    refused = invoke("verify-image", tag, "--key", str(keys.theirs.public))
    assert refused.returncode != 0 and refused.stderr.startswith(f"torchenv: error: refusing {tag}: it is not signed by the key")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_unsigned_image_is_refused(look_alike: str, local_registry: str, keys: Keys, tmp_path: Path) -> None:
    pushed = push_look_alike("unsigned", look_alike, local_registry, tmp_path, None, evidence())
    assert_refused(pushed, keys, "it is not signed;")
    # invoke pull, with the key set as a user sets it.
    environment = {
        "TORCHENV_VERIFY_KEY": str(keys.ours.public),
        "TORCHENV_DIGESTS_FILE": str(pushed.settings.digests_file),
        "TORCHENV_IMAGE_NAME": pushed.settings.image_name,
    }
    refused = invoke("pull", "--variant", VARIANT, environment=environment)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(f"torchenv: error: refusing {pushed.reference}: it is not signed; nothing was pulled or tagged")


def test_an_image_signed_by_another_key_is_refused(look_alike: str, local_registry: str, keys: Keys, tmp_path: Path) -> None:
    pushed = push_look_alike("theirs", look_alike, local_registry, tmp_path, Signer(str(keys.theirs.private)), evidence())
    assert_refused(pushed, keys, f"it is not signed by the key {keys.ours.public}")


def test_a_provenance_for_another_lock_is_refused(look_alike: str, local_registry: str, keys: Keys, tmp_path: Path) -> None:
    pushed = push_look_alike("other-lock", look_alike, local_registry, tmp_path, Signer(str(keys.ours.private)), evidence("0" * 64))
    expected = hashlib.sha256((LOCK_DIR / f"{VARIANT}.txt").read_bytes()).hexdigest()
    assert_refused(pushed, keys, f"its provenance names lock sha256 '{'0' * 64}', expected '{expected}'")


def registry_json(registry: str, path: str, accept: str) -> tuple[dict[str, object], str]:
    request = urllib.request.Request(f"http://{registry}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response), response.headers["Docker-Content-Digest"]


def put(registry: str, path: str, body: bytes, content_type: str, method: str = "PUT") -> None:
    request = urllib.request.Request(f"http://{registry}/v2/{path}", data=body, method=method, headers={"Content-Type": content_type})
    urllib.request.urlopen(request, timeout=30).close()


def tamper_with_provenance(registry: str, repository: str, digest: str) -> None:
    """Rewrites the provenance attestation in the registry, as someone with push access to it
    could: the statement's lock changed, cosign's signature kept."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    tag = digest.replace(":", "-") + ".att"
    manifest, _ = registry_json(registry, f"{repository}/manifests/{tag}", oci)
    for layer in manifest["layers"]:  # type: ignore[union-attr]
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/blobs/{layer['digest']}", timeout=30) as response:
            envelope = json.load(response)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        if statement["predicateType"] != provenance.PREDICATE_TYPE:
            continue
        statement["predicate"]["buildDefinition"]["externalParameters"]["lock"]["sha256"] = "f" * 64
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        body = json.dumps(envelope).encode()
        new_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        request = urllib.request.Request(f"http://{registry}/v2/{repository}/blobs/uploads/", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            location = response.headers["Location"]
        separator = "&" if "?" in location else "?"
        upload = location if location.startswith("http") else f"http://{registry}{location}"
        urllib.request.urlopen(
            urllib.request.Request(
                f"{upload}{separator}digest={new_digest}", data=body, method="PUT", headers={"Content-Type": "application/octet-stream"}
            ),
            timeout=30,
        ).close()
        layer["digest"], layer["size"] = new_digest, len(body)
    put(registry, f"{repository}/manifests/{tag}", json.dumps(manifest).encode(), oci)


def test_an_attestation_altered_after_signing_is_refused(look_alike: str, local_registry: str, keys: Keys, tmp_path: Path) -> None:
    pushed = push_look_alike("tampered", look_alike, local_registry, tmp_path, Signer(str(keys.ours.private)), evidence())
    tamper_with_provenance(local_registry, pushed.settings.image_name, pushed.digest)
    assert_refused(pushed, keys, "no provenance attestation of it verifies against the key")


def test_signing_fails_in_one_line_before_anything_is_pushed(look_alike: str, registry_server: LocalRegistry, tmp_path: Path) -> None:
    """A signing key that is not there: refused before the push, nothing in the registry."""
    settings = dataclasses.replace(Settings.load(), sign_key=str(tmp_path / "missing.key"), work_dir=tmp_path)
    with pytest.raises(TorchenvError, match=r"signing key .*missing.key \(TORCHENV_SIGN_KEY\) does not exist; make a key pair"):
        publish.signing_step(f"{registry_server.address}/torchenv-signing-missing", look_alike, settings)
    assert not (registry_server.data / "docker/registry/v2/repositories/torchenv-signing-missing").exists()


def test_a_signature_that_fails_leaves_the_moving_tags_unmoved(
    look_alike: str, local_registry: str, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key's password is wrong: the image went out under its commit tag only, the moving
    tag was not pushed, no digest is recorded, and the error says so in one line."""
    settings = dataclasses.replace(
        Settings.load(),
        work_dir=tmp_path,
        sign_key=str(keys.ours.private),
        digests_file=tmp_path / "digests.json",
        image_name="torchenv-signing-fails",
    )
    # The look-alike has no `cat` to read its SBOM with (the round trip reads a real one).
    monkeypatch.setattr(attest, "gather", lambda image, settings: evidence())
    repository = f"{local_registry}/{settings.image_name}"
    monkeypatch.setenv("COSIGN_PASSWORD", "not the password")
    sign = publish.signing_step(repository, look_alike, settings)
    with pytest.raises(TorchenvError) as caught:
        publish.push_tags(
            look_alike, [f"{repository}:2.0.1-cu117-py3.11-0123456", f"{repository}:{VARIANT}"], local_registry, settings, "zstd", sign
        )
    message = str(caught.value)
    assert message.startswith(f"signing {repository}@sha256:") and "decrypt" in message and "set COSIGN_PASSWORD" in message, message
    assert "unsigned under its most specific tag only" in message and "\n" not in message and keys.password not in message
    tags, _ = registry_json(local_registry, f"{settings.image_name}/tags/list", "application/json")
    assert tags["tags"] == ["2.0.1-cu117-py3.11-0123456"]
    assert not settings.digests_file.exists()


def test_no_key_or_password_reached_the_registry(registry_server: LocalRegistry, keys: Keys) -> None:
    """After every push above: the registry's signatures, attestations and manifests hold
    neither password nor private key (tests/secret_scan.py)."""
    files = list(registry_files(registry_server.data))
    assert any(where.endswith("/data") for where, _ in files), "the scan must see the blobs"
    # ... and the statements inside the attestations' envelopes (the provenance names the lock).
    assert any(where.endswith(":payload") and provenance.PREDICATE_TYPE.encode() in content for where, content in files)
    found = scan_files(files, [keys.password.encode(), keys.ours.private_body(), keys.theirs.private_body()])
    assert not found.needles and not found.unexpected_credentials(), found
