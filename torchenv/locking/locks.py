"""Hash-locked dependency sets: `invoke lock` writes images/locks/<variant>.txt with uv,
and builds install exactly that file (--require-hashes --no-deps, no resolution)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from torchenv import PROJECT_ROOT, display_path, statefiles
from torchenv.errors import TorchenvError
from torchenv.locking import sizes, wheels
from torchenv.model import compat, platforms
from torchenv.model.matrix import Variant
from torchenv.model.settings import Settings

LOCK_DIR = PROJECT_ROOT / "images" / "locks"

HEADER_FIELD = re.compile(r"^# (?P<key>[a-z-]+): (?P<value>.*)$")


@dataclass(frozen=True)
class Lock:
    path: Path
    requirements: str
    source: str
    platform: str
    source_date_epoch: int
    sha256: str
    # The download size of its wheels, where the index gave their sizes.
    wheel_bytes: int | None = None


def lock_path(variant: Variant, lock_dir: Path = LOCK_DIR) -> Path:
    return lock_dir / f"{variant.build_name}.txt"


def wheel_source_name(variant: Variant) -> str:
    return "pypi" if variant.pytorch_channel is None else f"pytorch index ({variant.pytorch_channel})"


def read_lock(variant: Variant, lock_dir: Path = LOCK_DIR) -> Lock | None:
    """The variant's lock, or None if it has none; a lock made for other inputs is refused."""
    path = lock_path(variant, lock_dir)
    if not path.exists():
        return None
    text = path.read_text()
    fields = {m["key"]: m["value"] for line in text.splitlines() if (m := HEADER_FIELD.match(line))}
    display = display_path(path)
    try:
        lock = Lock(
            path=path,
            requirements=fields["requirements"],
            source=fields["wheel-source"],
            platform=fields["platform"],
            source_date_epoch=int(fields["source-date-epoch"]),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            wheel_bytes=int(fields["wheel-bytes"]) if fields.get("wheel-bytes", "unknown") != "unknown" else None,
        )
    except (KeyError, ValueError):
        raise TorchenvError(
            f"{display} lacks torchenv's header; regenerate it: invoke lock --variant {variant.name}{platform_option(variant)}"
        ) from None
    wanted = " ".join(variant.requirements)
    if lock.requirements != wanted or lock.source != wheel_source_name(variant):
        raise TorchenvError(
            f"{display} is stale: it locks '{lock.requirements}' from {lock.source}, the matrix asks for '{wanted}' "
            f"from {wheel_source_name(variant)}; run: invoke lock --variant {variant.name}{platform_option(variant)}"
        )
    if lock.platform != variant.platform:
        relock = f"invoke lock --variant {variant.name}{platform_option(variant)}"
        raise TorchenvError(f"{display} locks for {lock.platform}, not {variant.platform}; run: {relock}")
    return lock


def platform_option(variant: Variant) -> str:
    return "" if len(variant.platforms) == 1 else f" --platform {variant.platform}"


def uv_executable() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        raise TorchenvError("uv is not installed; run ./invokew once (it installs requirements-dev.txt) or pip install uv")
    return found


def write_lock(variant: Variant, settings: Settings) -> Path:
    """Resolves the variant's full dependency set for its platform with uv and writes the lock."""
    platform = variant.platform
    index = wheels.index_url(variant, settings)
    wheels.require_reachable(variant, settings)
    try:
        settings.lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TorchenvError(
            f"cannot write the lock of {variant.name} into {settings.lock_dir} ({error.strerror}); "
            "point TORCHENV_LOCK_DIR at a writable folder"
        ) from None
    with tempfile.TemporaryDirectory() as scratch:
        wanted = write_wanted(Path(scratch), variant, index)
        resolved = Path(scratch) / "requirements.txt"
        result = uv_compile(variant, settings, Path(scratch), ["--generate-hashes", "--output-file", resolved.name, wanted.name])
        if result.returncode != 0:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise TorchenvError(f"uv could not resolve {variant.name}: {' '.join(lines[-3:])}")
        pypi = wheels.pypi_simple_url()
        download = sizes.wheel_bytes(
            resolved.read_text(), lambda name: index if index and name in compat.PYTORCH_INDEX_PACKAGES else pypi, platform, settings
        )
        from_index = ", ".join(sorted(compat.PYTORCH_INDEX_PACKAGES))
        header = [
            f"# torchenv lock for variant {variant.name}: torch {variant.torch}, CUDA {variant.cuda}, Python {variant.python}.",
            f"# Made by `invoke lock --variant {variant.name}{platform_option(variant)}`; "
            "builds install exactly this (--require-hashes --no-deps).",
            f"# requirements: {' '.join(variant.requirements)}",
            f"# wheel-source: {wheel_source_name(variant)}",
            # Where the hashes of the PyTorch index's files came from (a mirror, say).
            *([f"# pytorch-index: {wheels.without_credentials(index)} ({from_index})"] if index else []),
            f"# platform: {platform}",
            f"# wheel-bytes: {download if download is not None else 'unknown'}",
            f"# source-date-epoch: {int(time.time())}",
        ]
        target = lock_path(variant, settings.lock_dir)
        text = "\n".join(header) + "\n" + resolved.read_text()
        if target.exists() and without_epoch(target.read_text()) == without_epoch(text):
            return target  # nothing changed: keep the file, and with it the images' timestamps
        try:
            statefiles.write_text(target, text)
        except OSError as error:
            raise TorchenvError(
                f"cannot write the lock of {variant.name} to {display_path(target)} ({error.strerror}); "
                "make it writable or point TORCHENV_LOCK_DIR at a writable folder"
            ) from None
    return target


def uv_compile(variant: Variant, settings: Settings, scratch: Path, arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """`uv pip compile ARGUMENTS` for VARIANT's platform and Python, in SCRATCH: the files it
    names are relative to it, so that a lock's "via" notes carry no temporary directory."""
    command = [uv_executable(), "pip", "compile", "--no-header", "--quiet"]
    command += ["--python-platform", variant.python_platform, "--python-version", variant.python]
    env = dict(os.environ)
    ca_bundle = settings.ca_bundle_path()
    if ca_bundle:
        env["SSL_CERT_FILE"] = str(ca_bundle)
    return subprocess.run([*command, *arguments], capture_output=True, text=True, env=env, cwd=scratch)


def write_wanted(scratch: Path, variant: Variant, index: str | None, more: tuple[str, ...] = ()) -> Path:
    """What uv resolves: the variant's pins (and MORE, a project's requirements); for a
    PyTorch-index variant as a project whose torch, torchvision and torchaudio come from
    that index alone (an explicit index) and everything else from PyPI, the way the build
    installs them."""
    requirements = [*variant.requirements, *more]
    if index is None:
        wanted = scratch / "requirements.in"
        wanted.write_text("\n".join(requirements) + "\n")
        return wanted
    wanted = scratch / "pyproject.toml"
    dependencies = ", ".join(json.dumps(requirement) for requirement in requirements)
    sources = "\n".join(f'{name} = {{ index = "pytorch" }}' for name in sorted(compat.PYTORCH_INDEX_PACKAGES))
    wanted.write_text(
        f'[project]\nname = "torchenv-{variant.name}"\nversion = "0"\nrequires-python = "=={variant.python}.*"\n'
        f"dependencies = [{dependencies}]\n\n"
        f'[[tool.uv.index]]\nname = "pytorch"\nurl = "{index}"\nexplicit = true\n\n'
        f"[tool.uv.sources]\n{sources}\n"
    )
    return wanted


def without_epoch(lock_text: str) -> str:
    return re.sub(r"^# source-date-epoch: .*\n", "", lock_text, flags=re.M)


def pins_in(text: str) -> dict[str, str]:
    """name (as the lock spells it) -> version of every `name==version` line of a lock's TEXT."""
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.M))


def locked_packages(lock: Lock) -> dict[str, str]:
    """name -> version of every package the lock pins."""
    return {name.lower(): version for name, version in pins_in(lock.path.read_text()).items()}


def base_list_path(suite: str, lock_dir: Path = LOCK_DIR, platform: str = platforms.AMD64) -> Path:
    name = suite if platform == platforms.AMD64 else f"{suite}-{platforms.arch(platform)}"
    return lock_dir / f"base-{name}.txt"


def base_drift(suite: str, packages: str, lock_dir: Path = LOCK_DIR, platform: str = platforms.AMD64) -> list[str]:
    """Packages whose name, version or architecture differ from the recorded base list."""
    path = base_list_path(suite, lock_dir, platform)
    if not path.exists():
        return []
    recorded = set(path.read_text().splitlines())
    current = set(packages.splitlines())
    return sorted(recorded ^ current)
