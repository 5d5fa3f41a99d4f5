"""Pushing an image with zstd-compressed layers. The engine's own push (and BuildKit's
docker driver) compresses with gzip only, so torchenv compresses the layers itself into an
OCI layout (torchenv/pipeline/zstd_layout.py) and skopeo uploads that as it is, handling
the registry's authentication (`docker login`). Docker 23 and later pull it; older clients
need `--compression gzip`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.addresses import is_loopback_host
from torchenv.pipeline import zstd_layout


def host_and_port(registry: str) -> tuple[str, int | None]:
    """ "ghcr.io/owner" -> ("ghcr.io", None); "127.0.0.1:5000" -> ("127.0.0.1", 5000);
    "[::1]:5000" -> ("::1", 5000)."""
    authority = registry.split("/", 1)[0]
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest.removeprefix(":")
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, ""
    return host, int(port) if port.isdigit() else None


def is_local(registry: str) -> bool:
    """Docker talks plain HTTP to a registry on the loopback; skopeo must be told to."""
    return is_loopback_host(host_and_port(registry)[0])


def skopeo() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise TorchenvError(
            "pushing with zstd layers needs skopeo, which is not installed: run ./invokew push once (on Debian it installs skopeo), "
            "or push with --compression gzip"
        )
    return found


def require_reachable(registry: str, alias: str) -> None:
    """Before saving gigabytes to an archive: does anything listen where the registry is?"""
    host, port = host_and_port(registry)
    address = (host, port or (80 if is_local(registry) else 443))
    try:
        socket.create_connection(address, timeout=10).close()
    except OSError as error:
        raise TorchenvError(
            f"pushing {alias} failed: cannot connect to {registry} ({error.strerror or error}); check that the registry "
            f"{registry} runs and that `docker login {registry}` succeeded, then rerun"
        ) from None


def push(
    image_id: str, aliases: list[str], registry: str, work_dir: Path, level: int, after_first: Callable[[str], None] | None = None
) -> str:
    """Pushes IMAGE_ID under every alias with zstd layers of LEVEL; returns the manifest
    digest. AFTER_FIRST runs with the digest once the first alias is pushed, before the others."""
    binary = skopeo()
    require_reachable(registry, aliases[0])
    tls = ["--dest-tls-verify=false"] if is_local(registry) else []
    first = aliases[0]
    with zstd_layout.written(image_id, work_dir, level) as layout, tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        digest_file = Path(scratch) / "digest"
        # --preserve-digests: skopeo sends the blobs and the manifest as they are, or fails.
        command = [
            binary,
            "copy",
            "--quiet",
            *tls,
            "--preserve-digests",
            "--digestfile",
            str(digest_file),
            layout.source,
            f"docker://{first}",
        ]
        _run(command, first, registry)
        digest = digest_file.read_text().strip()
    if digest != layout.manifest_digest:
        raise TorchenvError(
            f"pushing {first} (zstd) stored manifest {digest[:19]}, not the {layout.manifest_digest[:19]} torchenv wrote; "
            "the registry rewrote it: push with --compression gzip"
        )
    if after_first:
        after_first(digest)
    # The other tags point at the same manifest: a copy inside the registry, no blob moves.
    source_tls = ["--src-tls-verify=false"] if tls else []
    for alias in aliases[1:]:
        _run(
            [binary, "copy", "--quiet", *tls, *source_tls, "--preserve-digests", f"docker://{first}", f"docker://{alias}"], alias, registry
        )
    return digest


def _run(command: list[str], alias: str, registry: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = engine.last_line(result.stderr) or engine.last_line(result.stdout)
        raise TorchenvError(
            f"pushing {alias} (zstd) failed: {reason}; check that the registry {registry} runs and that "
            f"`docker login {registry}` succeeded, then rerun"
        )
