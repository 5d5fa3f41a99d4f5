"""Where torchenv's knobs come from: TORCHENV_* environment variables, overridden by the
`torchenv:` section of an Invoke config file (invoke.yaml) when the tasks run."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError
from torchenv.model.trust import Signer, Trust, signer_from, trust_from

SYSTEM_CA_BUNDLES = (Path("/etc/ssl/certs/ca-certificates.crt"), Path("/etc/pki/tls/certs/ca-bundle.crt"))
# The PyTorch wheel index, as PyTorch's own install instructions give it.
PYTORCH_INDEX = "https://download.pytorch.org/whl"


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# A YAML number is a size in bytes (shm_size); every other text setting must be text.
NUMBERS_AS_TEXT = frozenset({"shm_size"})


def coerced(name: str, kind: Any, value: Any) -> Any:
    """VALUE (from the environment: text; from invoke.yaml: any YAML value) as the setting's
    type, or a one-line error naming the setting, what it got and what it takes."""
    shown = repr(value)[:80]
    if kind in ("Path", Path):
        if not isinstance(value, (str, Path)):
            raise TorchenvError(f"setting {name} must be a path, got {shown}")
        return Path(value)
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise TorchenvError(f"setting {name} must be true or false ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}), got {shown}")
    if kind in ("int", int):
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", value):
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TorchenvError(f"setting {name} must be a whole number, got {shown}")
    if kind in ("float", float):
        try:
            number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise TorchenvError(f"setting {name} must be a number, got {shown}")
        return number
    if isinstance(value, bool) or (not isinstance(value, str) and not (name in NUMBERS_AS_TEXT and isinstance(value, int))):
        raise TorchenvError(f"setting {name} must be text, got {shown}")
    return value


@dataclass(frozen=True)
class Settings:
    # The variant matrix every task reads.
    matrix: Path = PROJECT_ROOT / "images" / "matrix.toml"
    # Local image repository: variants are tagged <image_name>:<variant>.
    image_name: str = "torchenv"
    # Base URL of the PyTorch wheel index or a mirror of it; a variant whose
    # wheel_source is "pytorch-<channel>" installs torch, torchvision and torchaudio from
    # <pytorch_index>/<channel> (everything else from PyPI).
    pytorch_index: str = PYTORCH_INDEX
    # CA bundle handed to the installers (uv, and pip for uv itself) as a BuildKit secret ("" = the system bundle, if any).
    ca_bundle: str = ""
    # Debian mirror for mmdebstrap ("" = mmdebstrap's default). A snapshot archive URL
    # (the archive frozen at a timestamp) makes the base repeatable; then set debian_snapshot.
    debian_mirror: str = ""
    # Set it when debian_mirror is a snapshot archive: mmdebstrap then accepts its Release
    # files, which are past their Valid-Until date by design.
    debian_snapshot: bool = False
    # Where mmdebstrap runs to make the base: auto (on the host if it has the pinned
    # mmdebstrap 1.3.5, else in a container: macOS, Windows, other Linux), host, or container.
    base_maker: str = "auto"
    # Where the image says it came from (OCI label).
    source_url: str = "https://github.com/torchenv/torchenv"
    # BuildKit progress output: plain (streamed and read for errors), tty, auto or quiet.
    progress: str = "plain"
    # Scratch space for build contexts, the base's root filesystem, zstd pushes and test records (git-ignored).
    work_dir: Path = PROJECT_ROOT / "build"
    # The hash-locked dependency sets and the base's package lists.
    lock_dir: Path = PROJECT_ROOT / "images" / "locks"
    # Where `invoke push` records each variant's pushed digest (committed).
    digests_file: Path = PROJECT_ROOT / "images" / "digests.json"
    # Build a variant that has no lock from its pins, resolved at build time (marked not
    # reproducible), instead of locking it first.
    allow_unlocked: bool = False
    # Free space a build needs on Docker's data root, in GB; 0 = torchenv's estimate.
    min_free_gb: float = 0
    # /dev/shm of the containers torchenv runs and of compose's services ("8g"), where
    # DataLoader worker processes hand over their batches; empty: half of this machine's
    # memory, between 1 and 16 GB (Docker's own default is 64 MB).
    shm_size: str = ""
    # zstd level of `invoke push` (1-22): 9 pushes cu117 in 0.39x the time of the naive
    # image's gzip push at 0.69x its size (docs/performance/publishing.md); 12 and up are
    # barely smaller and much slower to push; pulls decode as fast at any level.
    zstd_level: int = 9
    # The cosign private key `invoke push` signs with: a file path or a KMS URI; its password
    # in COSIGN_PASSWORD, never here (docs/supply-chain.md). Unset with sign_keyless unset:
    # pushes go out unsigned, with a warning.
    sign_key: str = ""
    # Sign keylessly instead, with the CI job's OIDC identity (the GitHub workflow does).
    sign_keyless: bool = False
    # The public key `invoke pull`, `build --pull-first` and `verify-image` check signatures
    # and provenance against. Unset, with no verify_identity: pulls check labels only.
    verify_key: str = ""
    # Or a keyless signer's certificate identity (a workflow's URI) ...
    verify_identity: str = ""
    # ... and its OIDC issuer (GitHub's: https://token.actions.githubusercontent.com).
    verify_issuer: str = ""

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
        values: dict[str, Any] = {}
        known = {field.name: field for field in fields(cls)}
        for name in known:
            # An empty variable is an unset one (a CI variable that was never defined).
            env_value = environ.get(f"TORCHENV_{name.upper()}")
            if env_value:
                values[name] = env_value
        for name, value in (overrides or {}).items():
            if name not in known:
                raise TorchenvError(f"unknown torchenv setting '{name}' in the Invoke config; known: {', '.join(known)}")
            if value not in (None, ""):
                values[name] = value
        for name, value in values.items():
            values[name] = coerced(name, known[name].type, value)
        settings = replace(cls(), **values)
        settings = replace(settings, shm_size=str(settings.shm_size))  # a YAML number is a size in bytes
        if settings.shm_size and not re.fullmatch(r"[1-9]\d*[kmg]?", settings.shm_size.lower()):
            raise TorchenvError(f'setting shm_size must be a size like "8g" or "512m", got {settings.shm_size!r}')
        if not math.isfinite(settings.min_free_gb) or settings.min_free_gb < 0:
            raise TorchenvError(
                f"setting min_free_gb must be a number of GB, 0 or more (0: torchenv's estimate), got {settings.min_free_gb}"
            )
        if not 1 <= settings.zstd_level <= 22:
            raise TorchenvError(f"setting zstd_level must be between 1 and 22 (zstd's levels), got {settings.zstd_level}")
        signer_from(settings.sign_key, settings.sign_keyless)
        trust_from(settings.verify_key, settings.verify_identity, settings.verify_issuer)
        return settings

    def signer(self) -> Signer | None:
        return signer_from(self.sign_key, self.sign_keyless)

    def trust(self) -> Trust | None:
        return trust_from(self.verify_key, self.verify_identity, self.verify_issuer)

    @property
    def pytorch_index_is_default(self) -> bool:
        """True when no mirror was configured: the PyTorch index itself is used."""
        return self.pytorch_index.rstrip("/") == PYTORCH_INDEX

    def container_shm_size(self) -> str:
        """shm_size, or half of this machine's memory in whole GB, between 1 and 16."""
        if self.shm_size:
            return self.shm_size
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return f"{min(16, max(1, memory // 2 // 2**30))}g"

    def container_shm_size_bytes(self) -> int:
        size = self.container_shm_size().lower()
        return int(size.rstrip("kmg")) * {"k": 2**10, "m": 2**20, "g": 2**30}.get(size[-1], 1)

    def ca_bundle_path(self) -> Path | None:
        """The CA bundle builds hand to pip, or None when the host has none."""
        if self.ca_bundle:
            path = Path(self.ca_bundle)
            if not path.is_file():
                raise TorchenvError(f"CA bundle {path} (TORCHENV_CA_BUNDLE) does not exist; point it at a PEM file or unset it")
            return path
        return next((path for path in SYSTEM_CA_BUNDLES if path.is_file()), None)
