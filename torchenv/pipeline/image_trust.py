"""Is a pushed image the one we trust? Its signature, its provenance and its SBOM, each checked
by cosign against the trusted key or identity, then the provenance's claims compared with what
the pull expects (the committed lock, the recorded commit). Run before a pull: an image that
fails is never downloaded, let alone tagged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchenv.errors import TorchenvError
from torchenv.model import provenance
from torchenv.model.provenance import Claims, Expected
from torchenv.model.trust import Trust
from torchenv.pipeline import cosign


class Untrusted(TorchenvError):
    """Why an image is refused: one clause, for the caller to complete with what to do."""


@dataclass(frozen=True)
class Verified:
    reference: str
    claims: Claims
    sbom_components: int

    def lines(self) -> list[str]:
        return [*self.claims.lines(), f"sbom       {self.sbom_components} components (CycloneDX)"]


def digest_of(reference: str) -> str:
    if "@sha256:" not in reference:
        raise TorchenvError(f"{reference} names no digest; check an image by its digest (REPOSITORY@sha256:...)")
    return reference.rsplit("@", 1)[1]


def check_signature(reference: str, trust: Trust) -> None:
    try:
        cosign.run(cosign.verify_command(reference, trust))
    except cosign.CosignError as error:
        reason = str(error)
        if "no signatures found" in reason:
            raise Untrusted("it is not signed") from None
        if "no matching signatures" in reason or "invalid signature" in reason:
            raise Untrusted(f"it is not signed by {trust.describe()} ({reason})") from None
        raise TorchenvError(f"checking the signature of {reference} failed: {reason}") from None


def verified_predicates(reference: str, trust: Trust, kind: str, what: str) -> list[dict[str, Any]]:
    """The predicates of REFERENCE's attestations of KIND that verify against TRUST and name
    REFERENCE's digest as their subject; none fails."""
    try:
        found = cosign.statements(cosign.run(cosign.verify_attestation_command(reference, trust, kind)))
    except cosign.CosignError as error:
        reason = str(error)
        if reason.rstrip(":").endswith("no matching attestations"):
            raise Untrusted(f"it has no {what} attestation") from None
        # cosign drops an attestation whose signature fails before it looks at the types.
        if "no matching attestations" in reason or "signature" in reason or "matched the predicate type" in reason:
            raise Untrusted(
                f"no {what} attestation of it verifies against {trust.describe()} "
                "(none was attached, or it was altered or signed by another key)"
            ) from None
        raise TorchenvError(f"checking the {what} of {reference} failed: {reason}") from None
    digest = digest_of(reference).removeprefix("sha256:")
    about_it = [
        statement.get("predicate", {})
        for statement in found
        if any(subject.get("digest", {}).get("sha256") == digest for subject in statement.get("subject", []))
    ]
    if not about_it:
        raise Untrusted(f"its {what} attestation names another image as its subject")
    return about_it


def check(reference: str, trust: Trust, expected: Expected) -> Verified:
    """Checks REFERENCE (repository@digest) against TRUST and EXPECTED; raises Untrusted with
    the reason, or returns what the provenance says."""
    digest_of(reference)
    check_signature(reference, trust)
    claims = [
        provenance.claims_of(document)
        for document in verified_predicates(reference, trust, provenance.PROVENANCE_ATTESTATION, "provenance")
    ]
    # Every provenance the trusted signer attached must agree: two that contradict each other are no answer.
    problems = sorted({problem for claim in claims for problem in provenance.mismatches(claim, expected)})
    if problems:
        raise Untrusted("; ".join(problems))
    documents = verified_predicates(reference, trust, provenance.SBOM_ATTESTATION, "SBOM")
    components = max(len(document.get("components", [])) for document in documents)
    if not components:
        raise Untrusted("its SBOM attestation lists no components")
    return Verified(reference, claims[0], components)
