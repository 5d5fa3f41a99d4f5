"""Who signs what `invoke push` publishes, and whom `invoke pull` trusts: a cosign key pair
the user supplies, or keyless signing with an OIDC identity (a CI workflow's) that
Sigstore's certificate authority certifies. Pure data; pipeline/cosign.py carries it out."""

from __future__ import annotations

from dataclasses import dataclass

from torchenv.errors import TorchenvError

# The password of an encrypted cosign key, read by cosign itself: never a setting, never logged.
PASSWORD_VARIABLE = "COSIGN_PASSWORD"
# The issuer of GitHub Actions' OIDC tokens, which keyless signing in the workflow uses.
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


@dataclass(frozen=True)
class Signer:
    """A private key (a file path or a KMS URI), or keyless."""

    key: str = ""
    keyless: bool = False

    def describe(self) -> str:
        return "keyless (this job's OIDC identity)" if self.keyless else f"the key {self.key}"


@dataclass(frozen=True)
class Trust:
    """A public key (a file path or a KMS URI), or the identity and issuer of a keyless signer."""

    key: str = ""
    identity: str = ""
    issuer: str = ""

    @property
    def keyless(self) -> bool:
        return not self.key

    def describe(self) -> str:
        return f"the identity {self.identity} (issuer {self.issuer})" if self.keyless else f"the key {self.key}"


def signer_from(key: str, keyless: bool) -> Signer | None:
    """The configured signer, or None when pushes go out unsigned."""
    if key and keyless:
        raise TorchenvError("both a signing key (TORCHENV_SIGN_KEY) and keyless signing (TORCHENV_SIGN_KEYLESS) are set; choose one")
    if key or keyless:
        return Signer(key, keyless)
    return None


def trust_from(key: str, identity: str, issuer: str) -> Trust | None:
    """The configured trust, or None when pulls check labels only."""
    if key and (identity or issuer):
        raise TorchenvError(
            "both a public key (TORCHENV_VERIFY_KEY) and a keyless identity (TORCHENV_VERIFY_IDENTITY/_ISSUER) are set; choose one"
        )
    if bool(identity) != bool(issuer):
        missing = "TORCHENV_VERIFY_ISSUER (GitHub's is " + GITHUB_ISSUER + ")" if identity else "TORCHENV_VERIFY_IDENTITY"
        raise TorchenvError(f"a keyless identity needs both its identity and its issuer; set {missing} too")
    if key or identity:
        return Trust(key, identity, issuer)
    return None
