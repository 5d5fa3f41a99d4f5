"""A registry of torchenv's own on 127.0.0.1 (the distribution registry, Debian's
docker-registry), for as long as a block runs: `invoke repro --against` pushes its rebuild
there, and the bench measures pushes and pulls against it. Its data goes with it."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torchenv.errors import TorchenvError

BINARIES = ("docker-registry", "registry")


@dataclass(frozen=True)
class ScratchRegistry:
    address: str
    # Where it keeps every blob and manifest pushed to it.
    data: Path


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextlib.contextmanager
def serving(work_dir: Path, why: str) -> Iterator[ScratchRegistry]:
    """A registry on a free port of 127.0.0.1; WHY names what needs it, for the error."""
    binary = next((found for name in BINARIES if (found := shutil.which(name))), None)
    if binary is None:
        raise TorchenvError(
            f"{why} needs the distribution registry to run on 127.0.0.1, and neither docker-registry nor registry is installed: "
            "run ./invokew test or ./invokew push once (on Debian they install it), or install the distribution registry, then rerun"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="registry-", dir=work_dir))
    address = free_address()
    config = root / "config.yml"
    storage = f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
    config.write_text(f"version: 0.1\n{storage}http:\n  addr: {address}\n")
    with open(root / "registry.log", "w") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        # Straight to 127.0.0.1, whatever http_proxy says.
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            with contextlib.suppress(OSError):
                direct.open(f"http://{address}/v2/", timeout=1).close()
                break
            if process.poll() is not None:
                break
            time.sleep(0.2)
        else:
            raise TorchenvError(f"{why}: the registry on {address} did not answer within 20 s ({_last_line(root)}); rerun")
        if process.poll() is not None:
            raise TorchenvError(f"{why}: the registry on {address} exited at start ({_last_line(root)}); check {binary}, then rerun")
        yield ScratchRegistry(address, root / "data")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _last_line(root: Path) -> str:
    lines = (root / "registry.log").read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "it wrote nothing"
