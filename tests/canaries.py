"""Secrets of the test run's own, planted where a build could leak from, so that the
secret scans always have something to find: a generated CA certificate added to the CA
bundle the builds get, and a registry login in the Docker config the engine reads."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from torchenv.model.settings import Settings

CANARY_REGISTRY = "torchenv-canary.invalid"


def generated_ca(folder: Path) -> Path:
    """A fresh self-signed CA certificate (PEM); its key is thrown away."""
    certificate = folder / "torchenv-test-ca.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(folder / "key.pem"), "-out", str(certificate), "-subj", f"/CN=torchenv test CA {secrets.token_hex(8)}"),
        ],
        check=True,
        capture_output=True,
    )
    (folder / "key.pem").unlink()
    return certificate


def settings_with_test_ca(folder: Path) -> Settings:
    """The real settings, but the CA bundle is the host's plus a generated test CA."""
    settings = Settings.load()
    host_bundle = settings.ca_bundle_path()
    bundle = folder / "ca-bundle.pem"
    bundle.write_text((host_bundle.read_text() if host_bundle else "") + generated_ca(folder).read_text())
    return dataclasses.replace(settings, ca_bundle=str(bundle))


def plant_registry_login(folder: Path) -> None:
    """Points DOCKER_CONFIG at FOLDER: the user's Docker config with one more login, and
    everything else of theirs (contexts, CLI plugins, buildx builders) linked as it is,
    for this process, the engine calls it makes and the tools it starts."""
    original = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    if original.resolve() == folder.resolve():
        return  # a test run started by a test run: planted already
    config = json.loads((original / "config.json").read_text()) if (original / "config.json").exists() else {}
    login = base64.b64encode(f"torchenv-canary:{secrets.token_hex(16)}".encode()).decode()
    config.setdefault("auths", {})[CANARY_REGISTRY] = {"auth": login}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    if original.is_dir():
        for entry in original.iterdir():
            if entry.name != "config.json":
                (folder / entry.name).symlink_to(entry.resolve())
    os.environ["DOCKER_CONFIG"] = str(folder)
