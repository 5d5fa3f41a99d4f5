"""The registry tier's shared parts: a REAL registry (the distribution registry, Debian's
docker-registry) on 127.0.0.1, and cosign key pairs made for the run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from torchenv.model.trust import PASSWORD_VARIABLE
from torchenv.pipeline import scratch_registry


@dataclass(frozen=True)
class LocalRegistry:
    address: str
    # Where it keeps every blob and manifest pushed to it.
    data: Path


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    if not any(shutil.which(name) for name in scratch_registry.BINARIES):
        pytest.fail("docker-registry is not installed; ./invokew test installs it")
    with scratch_registry.serving(tmp_path_factory.mktemp("registry"), "the registry tests") as registry:
        yield LocalRegistry(registry.address, registry.data)


@pytest.fixture(scope="module")
def local_registry(registry_server: LocalRegistry) -> str:
    return registry_server.address


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    def private_body(self) -> bytes:
        """The encrypted key's base64 body: what would show if it leaked."""
        lines = self.private.read_bytes().splitlines()
        return b"".join(line for line in lines if line and not line.startswith(b"-----"))[:64]


@dataclass(frozen=True)
class Keys:
    ours: KeyPair
    theirs: KeyPair
    password: str


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Two cosign key pairs, encrypted with a password made for this run; COSIGN_PASSWORD
    holds it while the tests run, as a user's CI would."""
    if shutil.which("cosign") is None:
        pytest.fail("cosign is not installed; ./invokew test installs it")
    password = "pw-" + os.urandom(12).hex()
    pairs = []
    for name in ("ours", "theirs"):
        folder = tmp_path_factory.mktemp(f"key-{name}")
        subprocess.run(
            ["cosign", "generate-key-pair"], cwd=folder, env={**os.environ, PASSWORD_VARIABLE: password}, check=True, capture_output=True
        )
        pairs.append(KeyPair(folder / "cosign.key", folder / "cosign.pub"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_VARIABLE, password)
        yield Keys(pairs[0], pairs[1], password)
