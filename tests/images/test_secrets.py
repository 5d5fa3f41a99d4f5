"""No secret reaches an image: every layer (deleted files included), the history and the
labels of `docker save` are searched in one pass for the build's CA bundle, this host's
logins and anything that looks like a credential."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.model.matrix import Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.base import base_reference

from ..secret_scan import ScanResult, scan_saved_image
from .conftest import TrackedContainer

CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class Needles:
    host_ca: list[bytes]  # a line from each certificate only the host's bundle has
    host_secrets: list[bytes]  # registry logins, secret-looking environment values


def certificates(pem: str) -> set[str]:
    """The base64 bodies of the certificates in a PEM bundle."""
    parts = pem.split("-----BEGIN CERTIFICATE-----")[1:]
    return {part.split("-----END CERTIFICATE-----")[0].strip() for part in parts}


def host_secrets() -> list[bytes]:
    secrets = [value for key, value in os.environ.items() if re.search(r"TOKEN|PASSWORD|SECRET|API_KEY", key) and len(value) >= 8]
    docker_config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    if docker_config.exists():
        secrets += [entry["auth"] for entry in json.loads(docker_config.read_text()).get("auths", {}).values() if entry.get("auth")]
    return [secret.encode() for secret in secrets]


@pytest.fixture(scope="module")
def needles(variant: Variant, settings: Settings, container: TrackedContainer) -> Needles:
    bundle = settings.ca_bundle_path()
    assert bundle is not None, "the host has no CA bundle; nothing was handed to the build"
    # Debian's public bundle, from the base the image was built on; an image given with
    # --image whose base is not here can only be compared with its own copy of it.
    base = base_reference(variant.debian_suite, settings, variant.platform) if variant.debian_suite else variant.base
    if engine.get().image(base) is not None:
        base_bundle = engine.get().output_of(base, ["cat", CA_FILE], RunOptions(platform=variant.platform))
    else:
        base_bundle = container.host.check_output(f"cat {CA_FILE}")
    certifi_bundles = container.host.check_output("cat $(find /opt/venv -name cacert.pem)")
    host_only = certificates(bundle.read_text()) - certificates(base_bundle) - certificates(certifi_bundles)
    # One 64-character line from the middle of each such certificate is distinctive enough.
    return Needles([cert.splitlines()[len(cert.splitlines()) // 2].encode() for cert in host_only], host_secrets())


@pytest.fixture(scope="module")
def scan(image: str, needles: Needles) -> ScanResult:
    return scan_saved_image(image, needles.host_ca + needles.host_secrets)


def test_no_build_secret_named_in_history_or_config(image: str) -> None:
    history = "\n".join(step for step, _ in engine.get().history(image))
    config = json.dumps(dict(engine.get().require_image(image).config))
    assert "PIP_CERT=/etc" not in history + config and "ca-certificates.crt" not in history + config


def test_host_ca_bundle_left_no_trace(needles: Needles, scan: ScanResult) -> None:
    """The bundle was a build secret: no certificate that only the host trusts (in neither
    the base's Debian bundle nor certifi's public one) may appear anywhere. The test run
    adds a CA certificate of its own to the bundle (tests/canaries.py), so there is always
    at least one to look for."""
    assert needles.host_ca, "the bundle handed to the build holds no certificate of its own to look for"
    assert [hit for hit in scan.needles if hit[1] in needles.host_ca] == []


def test_no_host_credentials_in_any_layer(needles: Needles, scan: ScanResult) -> None:
    """The test run plants a registry login of its own (tests/canaries.py), beside any real one."""
    assert needles.host_secrets, "no registry login or secret-looking variable to look for"
    assert [hit for hit in scan.needles if hit[1] in needles.host_secrets] == []


def test_no_credential_looking_string_in_any_layer(scan: ScanResult) -> None:
    """Private keys, cloud and forge tokens, logins, user:password URLs: none but the
    documented examples and test vectors in tests/secret_scan.py NOT_SECRETS."""
    assert scan.unexpected_credentials() == []
