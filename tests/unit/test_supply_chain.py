"""Signing, provenance and trust decisions without an engine or a registry: the provenance
predicate and its claims, the settings that choose a signer and a trust, the cosign command
lines, how cosign's answers become refusals, and what a push does before it pushes.
tests/registry/test_signing.py runs all of it against the real registry and cosign."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest

from torchenv.errors import TorchenvError
from torchenv.model import provenance
from torchenv.model.provenance import BuildFacts, Expected
from torchenv.model.settings import Settings
from torchenv.model.trust import GITHUB_ISSUER, Signer, Trust
from torchenv.pipeline import cosign, image_trust

REVISION = "0123456789abcdef0123456789abcdef01234567"

FACTS = BuildFacts(
    variant="cu117",
    platform="linux/amd64",
    matrix_entry={"name": "cu117"},
    source_url="https://github.com/torchenv/torchenv",
    revision=REVISION,
    lock_path="images/locks/cu117.txt",
    lock_sha256="a" * 64,
    base_image="torchenv-base:bookworm",
    base_image_id="sha256:" + "b" * 64,
    base_packages_sha256="c" * 64,
    build_args={"VARIANT": "cu117"},
    target="torchenv-runtime",
    buildkit="v0.13.2",
    engine="26.1.5",
    builder_id="urn:torchenv:host:ci",
    started="2026-12-02T00:00:00Z",
    finished="2026-12-02T00:10:00Z",
)


def test_the_provenance_says_what_the_build_was_made_from_and_reads_back() -> None:
    document = provenance.predicate(FACTS)
    assert document["buildDefinition"]["externalParameters"]["lock"] == {"path": "images/locks/cu117.txt", "sha256": "a" * 64}
    resolved = {entry.get("name", "source"): entry["digest"] for entry in document["buildDefinition"]["resolvedDependencies"]}
    assert resolved == {
        "source": {"gitCommit": REVISION},
        "lock": {"sha256": "a" * 64},
        "base": {"sha256": "b" * 64},
        "base-packages": {"sha256": "c" * 64},
    }
    claims = provenance.claims_of(json.loads(json.dumps(document)))
    assert (claims.variant, claims.lock_sha256, claims.commit, claims.dirty) == ("cu117", "a" * 64, REVISION, False)
    assert claims.builder == "urn:torchenv:host:ci" and claims.buildkit == "v0.13.2"
    dirty = provenance.claims_of(provenance.predicate(dataclasses.replace(FACTS, revision=REVISION + "-dirty")))
    assert dirty.commit == REVISION and dirty.dirty
    assert BuildFacts.from_json(json.loads(json.dumps(FACTS.to_json()))) == FACTS


def test_a_provenance_torchenv_did_not_write_is_one_line() -> None:
    with pytest.raises(TorchenvError, match=r"^the provenance is not one torchenv wrote \(no 'buildDefinition' in it\)$"):
        provenance.claims_of({"builder": {}})


def test_each_mismatch_is_named_and_a_short_commit_matches_a_full_one() -> None:
    claims = provenance.claims_of(provenance.predicate(FACTS))
    assert provenance.mismatches(claims, Expected("cu117", "linux/amd64", "a" * 64, REVISION[:7])) == []
    assert provenance.mismatches(claims, Expected()) == []
    found = provenance.mismatches(claims, Expected("cu121", "", "d" * 64, "1234567"))
    assert found == [
        "its provenance names variant 'cu117', expected 'cu121'",
        f"its provenance names lock sha256 '{'a' * 64}', expected '{'d' * 64}'",
        f"its provenance names commit '{REVISION}', expected '1234567'",
    ]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"TORCHENV_SIGN_KEY": "k", "TORCHENV_SIGN_KEYLESS": "1"}, r"both a signing key .* and keyless signing .* are set; choose one"),
        ({"TORCHENV_VERIFY_KEY": "k.pub", "TORCHENV_VERIFY_IDENTITY": "x"}, r"both a public key .* and a keyless identity .* are set"),
        ({"TORCHENV_VERIFY_IDENTITY": "x"}, r"needs both its identity and its issuer; set TORCHENV_VERIFY_ISSUER \(GitHub's is https://"),
        ({"TORCHENV_VERIFY_ISSUER": GITHUB_ISSUER}, r"needs both its identity and its issuer; set TORCHENV_VERIFY_IDENTITY too"),
    ],
)
def test_contradicting_or_half_trust_settings_are_refused_in_one_line(environment: dict[str, str], message: str) -> None:
    with pytest.raises(TorchenvError, match=message):
        Settings.load(environ=environment)


def test_the_settings_choose_the_signer_and_the_trust() -> None:
    assert Settings.load(environ={}).signer() is None and Settings.load(environ={}).trust() is None
    assert Settings.load(environ={"TORCHENV_SIGN_KEY": "cosign.key"}).signer() == Signer("cosign.key")
    assert Settings.load(environ={"TORCHENV_SIGN_KEYLESS": "true"}).signer() == Signer("", keyless=True)
    keyless = Settings.load(
        environ={
            "TORCHENV_VERIFY_IDENTITY": "https://github.com/o/r/.github/workflows/images.yml@refs/heads/main",
            "TORCHENV_VERIFY_ISSUER": GITHUB_ISSUER,
        }
    )
    assert keyless.trust() == Trust("", "https://github.com/o/r/.github/workflows/images.yml@refs/heads/main", GITHUB_ISSUER)


def test_cosign_command_lines() -> None:
    local, remote = "127.0.0.1:5000/torchenv@sha256:" + "e" * 64, "ghcr.io/o/torchenv@sha256:" + "e" * 64
    # A key pair: no transparency log; plain HTTP only to the loopback.
    assert cosign.sign_command(local, Signer("k.key")) == [
        "cosign",
        "sign",
        "--yes",
        "--key",
        "k.key",
        "--tlog-upload=false",
        "--allow-http-registry",
        local,
    ]
    assert cosign.sign_command(remote, Signer("k.key")) == ["cosign", "sign", "--yes", "--key", "k.key", "--tlog-upload=false", remote]
    # Keyless: the job's OIDC identity and Sigstore's public log, as cosign does by default.
    assert cosign.sign_command(remote, Signer(keyless=True)) == ["cosign", "sign", "--yes", remote]
    attest = cosign.attest_command(remote, Signer(keyless=True), "slsaprovenance1", Path("p.json"))
    assert attest == ["cosign", "attest", "--yes", "--type", "slsaprovenance1", "--predicate", "p.json", remote]
    assert cosign.verify_command(remote, Trust("k.pub")) == ["cosign", "verify", "--key", "k.pub", "--insecure-ignore-tlog=true", remote]
    identity = Trust("", "https://github.com/o/r/.github/workflows/images.yml@refs/heads/main", GITHUB_ISSUER)
    assert cosign.verify_attestation_command(remote, identity, "cyclonedx") == [
        "cosign", "verify-attestation", "--type", "cyclonedx", "--certificate-identity", identity.identity,
        "--certificate-oidc-issuer", GITHUB_ISSUER, remote,
    ]  # fmt: skip


def test_cosigns_reason_is_its_last_line_without_prefixes_or_warnings() -> None:
    stderr = "Error: no matching signatures: invalid signature\nerror during command execution: no matching signatures: invalid signature\n"
    assert cosign.reason_of(stderr) == "no matching signatures: invalid signature"
    assert cosign.reason_of("error during command execution: x\nWARNING: Skipping tlog verification is an insecure practice\n") == "x"
    assert cosign.reason_of("") == "no reason given"


DIGEST = "sha256:" + "e" * 64
REFERENCE = f"127.0.0.1:5000/torchenv@{DIGEST}"


def envelope(predicate: dict[str, object], predicate_type: str, digest: str = DIGEST) -> str:
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": "x", "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicate": predicate,
    }
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signatures": [],
        }
    )


def answering(monkeypatch: pytest.MonkeyPatch, **answers: str | Exception) -> None:
    """cosign answering each subcommand with stdout, or failing with a reason."""

    def run(command: list[str]) -> str:
        answer = answers[command[1].replace("-", "_")]
        if isinstance(answer, Exception):
            raise answer
        if command[1] == "verify-attestation":
            kind = command[command.index("--type") + 1]
            return str(answers.get(f"{kind}_statements", ""))
        return answer

    monkeypatch.setattr(cosign, "run", run)


@pytest.mark.parametrize(
    ("failure", "refusal"),
    [
        ("no signatures found", "it is not signed"),
        (
            "no matching signatures: invalid signature when validating ASN.1 encoded signature",
            "it is not signed by the key k.pub (no matching",
        ),
    ],
)
def test_cosigns_signature_answers_become_refusals(monkeypatch: pytest.MonkeyPatch, failure: str, refusal: str) -> None:
    answering(monkeypatch, verify=cosign.CosignError(failure))
    with pytest.raises(image_trust.Untrusted, match=refusal.replace("(", r"\(")):
        image_trust.check(REFERENCE, Trust("k.pub"), Expected())


def test_a_registry_that_cannot_be_asked_is_a_failure_not_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, verify=cosign.CosignError('Get "http://127.0.0.1:5000/v2/": connect: connection refused'))
    with pytest.raises(TorchenvError, match=r"^checking the signature of 127.0.0.1:5000/torchenv@sha256:e+ failed: Get") as caught:
        image_trust.check(REFERENCE, Trust("k.pub"), Expected())
    assert not isinstance(caught.value, image_trust.Untrusted)


def test_attestations_must_name_this_digest_and_agree_with_what_is_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    good = envelope(provenance.predicate(FACTS), provenance.PREDICATE_TYPE)
    sbom_document = envelope({"bomFormat": "CycloneDX", "components": [{"name": "torch"}]}, "https://cyclonedx.org/bom")
    answering(monkeypatch, verify="[]", verify_attestation="", slsaprovenance1_statements=good, cyclonedx_statements=sbom_document)
    verified = image_trust.check(REFERENCE, Trust("k.pub"), Expected("cu117", "linux/amd64", "a" * 64, REVISION))
    assert verified.claims.lock_sha256 == "a" * 64 and verified.sbom_components == 1
    with pytest.raises(image_trust.Untrusted, match=r"^its provenance names lock sha256 'a+', expected 'f+'$"):
        image_trust.check(REFERENCE, Trust("k.pub"), Expected(lock_sha256="f" * 64))
    elsewhere = envelope(provenance.predicate(FACTS), provenance.PREDICATE_TYPE, "sha256:" + "0" * 64)
    answering(monkeypatch, verify="[]", verify_attestation="", slsaprovenance1_statements=elsewhere, cyclonedx_statements=sbom_document)
    with pytest.raises(image_trust.Untrusted, match=r"^its provenance attestation names another image as its subject$"):
        image_trust.check(REFERENCE, Trust("k.pub"), Expected())
    with pytest.raises(TorchenvError, match=r"names no digest; check an image by its digest"):
        image_trust.check("127.0.0.1:5000/torchenv:cu117", Trust("k.pub"), Expected())
