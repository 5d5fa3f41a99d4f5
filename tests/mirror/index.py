"""A PEP 503 simple index on 127.0.0.1: static pages over a directory of real wheels,
served by Python's own HTTP server, the way a mirror of the PyTorch wheel index serves
<URL>/<channel>/<project>/."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def project_of(wheel: Path) -> str:
    """The normalized project name (PEP 503) of a wheel file."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-", 1)[0]).lower()


def download(requirements: str, projects: frozenset[str], into: Path) -> list[Path]:
    """pip downloads exactly these hash-pinned wheels of PROJECTS (no dependencies) for this
    host's Python into INTO; files already there with a locked hash are kept."""
    into.mkdir(parents=True, exist_ok=True)
    wanted = into / "requirements.txt"
    wanted.write_text(requirements)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--require-hashes", "--only-binary", ":all:", "--dest", str(into), "-r", str(wanted)]
    subprocess.run(command, check=True)
    return sorted(wheel for wheel in into.glob("*.whl") if project_of(wheel) in projects)


def relabel(wheel: Path, label: str, into: Path) -> Path:
    """A copy of WHEEL whose version carries the local LABEL (2.0.1 -> 2.0.1+cu117), as
    the PyTorch index names its builds: the dist-info directory, METADATA and RECORD
    change, every other file is the same. Entries are stored uncompressed (it is quick)."""
    name, version, rest = wheel.name.split("-", 2)
    labelled = f"{version}+{label}"
    target = into / f"{name}-{labelled}-{rest}"
    if target.exists():
        return target
    old_info, new_info = f"{name}-{version}.dist-info/", f"{name}-{labelled}.dist-info/"
    partial_target = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(partial_target, "w", zipfile.ZIP_STORED) as copy:
        metadata = source.read(old_info + "METADATA").replace(f"\nVersion: {version}\n".encode(), f"\nVersion: {labelled}\n".encode(), 1)
        record_name = old_info + "RECORD"
        for entry in source.infolist():
            if entry.filename == record_name:
                continue
            data = metadata if entry.filename == old_info + "METADATA" else source.read(entry)
            renamed = zipfile.ZipInfo(entry.filename.replace(old_info, new_info, 1), entry.date_time)
            renamed.external_attr = entry.external_attr
            copy.writestr(renamed, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(metadata).digest()).rstrip(b"=").decode()
        record = []
        for line in source.read(record_name).decode().splitlines():
            path = line.split(",", 1)[0]
            if path == old_info + "METADATA":
                line = f"{new_info}METADATA,sha256={digest},{len(metadata)}"
            record.append(line.replace(old_info, new_info, 1))
        copy.writestr(zipfile.ZipInfo(new_info + "RECORD", (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    partial_target.rename(target)
    return target


def write_index(root: Path, channel: str, wheels: list[Path]) -> None:
    """ROOT/<channel>/<project>/index.html for each project, linking its files with their
    sha256 (PEP 503), and ROOT/<channel>/index.html listing the projects."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        served = files / wheel.name
        if not served.exists():
            served.hardlink_to(wheel)
        projects.setdefault(project_of(wheel), []).append(served)
    for project, served in projects.items():
        links = "".join(
            f'<a href="../../files/{html.escape(path.name)}#sha256={sha256_of(path)}">{html.escape(path.name)}</a><br>\n' for path in served
        )
        page = root / channel / project
        page.mkdir(parents=True, exist_ok=True)
        (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    listing = "".join(f'<a href="{project}/">{project}</a><br>\n' for project in sorted(projects))
    (root / channel / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{listing}</body></html>\n")


def tampered(wheel: Path, into: Path) -> Path:
    """A valid wheel of the same name with other bytes (one file more): what a broken or
    hostile mirror serves. Only its hash tells it from the real one."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry))
        target.writestr(f"{wheel.name.split('-')[0]}/tampered.txt", "not the locked bytes\n")
    return copy


@dataclass
class Served:
    url: str
    # Every path requested, in order: what the builds fetched from the mirror.
    requests: list[str] = field(default_factory=list)


@contextmanager
def serve(root: Path) -> Iterator[Served]:
    """Serves ROOT on 127.0.0.1 on a free port until the block ends."""
    served = Served(url="")

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            served.requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
