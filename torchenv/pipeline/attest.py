"""What `invoke push` attaches to each pushed digest: a cosign signature, the build's SLSA
provenance and the image's own SBOM, each as a signed in-toto attestation. Everything is
gathered before the first byte is pushed, so a missing record or tool fails with nothing
pushed."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model import provenance
from torchenv.model.names import Label
from torchenv.model.provenance import BuildFacts
from torchenv.model.settings import Settings
from torchenv.model.trust import Signer
from torchenv.pipeline import build_records, cosign


@dataclass(frozen=True)
class Evidence:
    """One image's provenance and SBOM, ready to attest."""

    facts: BuildFacts
    sbom_text: str


def require_signer(signer: Signer) -> None:
    """Before a push: cosign is there, and a key file named is a file."""
    cosign.binary()
    if not signer.keyless and "://" not in signer.key and not Path(signer.key).is_file():
        raise TorchenvError(
            f"signing key {signer.key} (TORCHENV_SIGN_KEY) does not exist; make a key pair with `cosign generate-key-pair` "
            "and point TORCHENV_SIGN_KEY at cosign.key, or unset it to push unsigned"
        )


def gather(image_id: str, settings: Settings) -> Evidence:
    """IMAGE_ID's build record, and its SBOM read from the image itself, at the path its label names."""
    facts = build_records.read_record(image_id, settings)
    path = engine.get().require_image(image_id).labels.get(Label.SBOM)
    if not path:
        raise TorchenvError(
            f"{image_id[:19]} carries no SBOM (it was built without a lock), so there is nothing to attest; "
            f"lock it (invoke lock --variant {facts.variant}), rebuild and test it, then push"
        )
    text = engine.get().output_of(image_id, ["cat", path], RunOptions(platform=facts.platform))
    return Evidence(facts, text)


def sign_and_attest(reference: str, signer: Signer, evidence: Evidence) -> None:
    """Signs REFERENCE (repository@digest) and attaches its provenance and SBOM."""
    with tempfile.TemporaryDirectory(prefix="torchenv-attest-") as scratch:
        predicate = Path(scratch) / "provenance.json"
        predicate.write_text(json.dumps(provenance.predicate(evidence.facts), sort_keys=True))
        document = Path(scratch) / "sbom.cdx.json"
        document.write_text(evidence.sbom_text)
        run(cosign.sign_command(reference, signer), reference, "signing")
        run(
            cosign.attest_command(reference, signer, provenance.PROVENANCE_ATTESTATION, predicate), reference, "attesting the provenance of"
        )
        run(cosign.attest_command(reference, signer, provenance.SBOM_ATTESTATION, document), reference, "attesting the SBOM of")


def sign(reference: str, signer: Signer) -> None:
    """Signs REFERENCE alone (an index: its platforms' images carry the attestations)."""
    run(cosign.sign_command(reference, signer), reference, "signing")


def run(command: list[str], reference: str, doing: str) -> None:
    try:
        cosign.run(command)
    except cosign.CosignError as error:
        hint = ""
        if "decrypt" in str(error):
            hint = "; set COSIGN_PASSWORD to the signing key's password"
        raise TorchenvError(f"{doing} {reference} failed: {error}{hint}") from None
