"""cosign, the one tool torchenv signs, attests and verifies with: its command lines (pure,
unit-tested) and one way to run them. Signatures and attestations go to the registry beside
the image, as cosign stores them (`sha256-<digest>.sig` and `.att`).

A key pair's signatures are checked against the key alone (no transparency log: a private
registry's images are not announced to a public one); keyless signatures are logged in
Sigstore's public log (Rekor) and checked there, as cosign does by default."""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from torchenv.errors import TorchenvError
from torchenv.model.trust import PASSWORD_VARIABLE, Signer, Trust
from torchenv.pipeline.zstd_push import is_local

INSTALL_HINT = "run ./invokew push or ./invokew verify-image once (on Debian they install Debian 13's cosign), or install cosign 2.x"


class CosignError(TorchenvError):
    """cosign said no; the message is its own last line."""


def binary() -> str:
    found = shutil.which("cosign")
    if found is None:
        raise TorchenvError(f"signing and checking signatures needs cosign, which is not installed: {INSTALL_HINT}")
    return found


def registry_flags(reference: str) -> list[str]:
    """A registry on the loopback speaks plain HTTP, as Docker and skopeo are told too."""
    return ["--allow-http-registry"] if is_local(reference) else []


def sign_command(reference: str, signer: Signer) -> list[str]:
    key = [] if signer.keyless else ["--key", signer.key, "--tlog-upload=false"]
    return ["cosign", "sign", "--yes", *key, *registry_flags(reference), reference]


def attest_command(reference: str, signer: Signer, kind: str, predicate: Path) -> list[str]:
    key = [] if signer.keyless else ["--key", signer.key, "--tlog-upload=false"]
    return ["cosign", "attest", "--yes", *key, "--type", kind, "--predicate", str(predicate), *registry_flags(reference), reference]


def trust_flags(trust: Trust) -> list[str]:
    if trust.keyless:
        return ["--certificate-identity", trust.identity, "--certificate-oidc-issuer", trust.issuer]
    return ["--key", trust.key, "--insecure-ignore-tlog=true"]


def verify_command(reference: str, trust: Trust) -> list[str]:
    return ["cosign", "verify", *trust_flags(trust), *registry_flags(reference), reference]


def verify_attestation_command(reference: str, trust: Trust, kind: str) -> list[str]:
    return ["cosign", "verify-attestation", "--type", kind, *trust_flags(trust), *registry_flags(reference), reference]


def reason_of(stderr: str) -> str:
    """cosign's own reason, without its "Error:" prefixes and its warnings."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    if not lines:
        return "no reason given"
    return lines[-1].removeprefix("error during command execution:").removeprefix("Error:").strip() or "no reason given"


def run(command: list[str]) -> str:
    """Runs a cosign COMMAND; returns its standard output. COSIGN_PASSWORD passes through the
    environment to cosign alone (empty when unset, so that cosign never waits at a prompt)."""
    environment = {**os.environ, PASSWORD_VARIABLE: os.environ.get(PASSWORD_VARIABLE, "")}
    result = subprocess.run(
        [binary(), *command[1:]], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=environment, timeout=600
    )
    if result.returncode != 0:
        raise CosignError(reason_of(result.stderr))
    return result.stdout


def statements(stdout: str) -> list[dict[str, Any]]:
    """The in-toto statements in `cosign verify-attestation`'s output (one DSSE envelope per line)."""
    found = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            found.append(json.loads(base64.b64decode(json.loads(line)["payload"])))
        except (json.JSONDecodeError, KeyError, TypeError, binascii.Error) as error:
            raise TorchenvError(f"cosign printed an attestation torchenv cannot read ({error})") from None
    return found
