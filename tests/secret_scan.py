"""One pass over `docker save IMAGE`: every file of every layer (deleted ones included),
the config (history, labels) and the manifests, searched for exact secrets and for
anything that looks like a credential."""

from __future__ import annotations

import base64
import io
import json
import queue
import re
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import IO

from torchenv import engine

# Each pattern with a locator: a short regex that every match contains. The locator scans
# the gigabytes of binaries (re's literal search is faster than bytes.find here), the
# pattern only a window around each place the locator found.
CREDENTIAL_PATTERNS: list[tuple[re.Pattern[bytes], re.Pattern[bytes]]] = [
    (re.compile(rb"PRIVATE KEY-----"), re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----")),
    (re.compile(rb"AKIA"), re.compile(rb"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])")),  # an AWS access key id
    (re.compile(rb"gh[pousr]_"), re.compile(rb"gh[pousr]_[A-Za-z0-9]{36}")),  # a GitHub token
    (re.compile(rb"xox"), re.compile(rb"xox[abprs]-[0-9A-Za-z-]{10,}")),  # a Slack token
    (re.compile(rb'"auth"'), re.compile(rb'"auth"\s*:\s*"[A-Za-z0-9+/]{12,}={0,2}"')),  # a docker config.json login
    (re.compile(rb"://"), re.compile(rb"[a-z][a-z0-9+.-]*://[A-Za-z0-9._~%-]+:[A-Za-z0-9._~%!$&'()*+,;=-]+@[A-Za-z0-9.-]+")),  # user:pass@
]

# Matches that are not secrets, each with why: (path pattern inside a layer, matched text).
NOT_SECRETS: list[tuple[str, bytes, str]] = [
    ("usr/lib/*/libgnutls.so.*", b"PRIVATE KEY-----", "GnuTLS's built-in self-test keys, published in its source"),
    ("usr/share/perl/*/HTTP/Tiny.pm", b"@", "documentation examples (john%40example.com, user:pass@proxy.example.com)"),
    ("opt/venv/lib/python3.*/site-packages/*urllib3/util/*url*", b"username:password@host.com", "a docstring example"),
    ("opt/venv/lib/python3.*/site-packages/*/_vendor/urllib3/util/*url*", b"username:password@host.com", "a docstring example"),
    # fsspec (torch 2.1 depends on it): URL examples in its docstrings.
    ("opt/venv/lib/python3.*/site-packages/fsspec/*", b"hdfs://username:pwd@node", "a docstring example"),
    ("opt/venv/lib/python3.*/site-packages/fsspec/*", b"smb://myuser:mypassword@myserver.com", "a docstring example"),
    ("opt/venv/lib/python3.*/site-packages/fsspec/*", b"github://org:repo@sha", "a URL form: org and repo, not a login"),
    ("opt/venv/lib/python3.*/site-packages/fsspec/*", b"gist://username:token@id", "a docstring example"),
]


@dataclass
class ScanResult:
    needles: list[tuple[str, bytes]] = field(default_factory=list)  # (where, needle)
    credentials: list[tuple[str, bytes]] = field(default_factory=list)  # (where, matched text)

    def unexpected_credentials(self) -> list[tuple[str, bytes]]:
        return [(where, text) for where, text in self.credentials if not is_known(where, text)]


def is_known(where: str, text: bytes) -> bool:
    path = where.split(":", 1)[-1]
    return any(fnmatch(path, pattern) and part in text for pattern, part, _ in NOT_SECRETS)


def scan_saved_image(image: str, needles: list[bytes]) -> ScanResult:
    with engine.get().saved(image) as stream:
        return scan_archive(io.BufferedReader(_Prefetched(stream), 1 << 20), needles)


def scan_archive(stream: IO[bytes], needles: list[bytes]) -> ScanResult:
    """Scans an image archive (a tar of blobs, some of them layer tars)."""
    return scan_files(_files(stream), needles)


def scan_files(files: Iterable[tuple[str, bytes]], needles: list[bytes]) -> ScanResult:
    """Scans (where, content) pairs: a saved image's files, a registry's blobs, a log."""
    result = ScanResult()
    for where, data in files:
        result.needles += [(where, needle) for needle in needles if needle in data]
        for locator, pattern in CREDENTIAL_PATTERNS:
            result.credentials += [(where, text) for text in credentials(data, locator, pattern)]
    return result


# How far a credential reaches around its locator: a URL's scheme and a PEM header before
# it, a token after it.
BEFORE, AFTER = 96, 4096


def credentials(data: bytes, locator: re.Pattern[bytes], pattern: re.Pattern[bytes]) -> list[bytes]:
    """PATTERN's matches in DATA, each found from a place LOCATOR matched: the pattern runs
    on a window around each, not across the gigabytes between (a scheme-like run before
    every byte of a binary made a whole-file search of the URL pattern slow)."""
    found: dict[int, bytes] = {}
    for located in locator.finditer(data):
        at = located.start()
        for match in pattern.finditer(data, max(0, at - BEFORE), located.end() + AFTER):
            if match.start() <= at < match.end():
                found.setdefault(match.start(), match.group()[:120])
    return [found[start] for start in sorted(found)]


def registry_files(data: Path, largest: int = 8 << 20) -> Iterator[tuple[str, bytes]]:
    """Every blob and link a registry keeps under DATA up to LARGEST bytes: the signatures,
    attestations and manifests beside the pushed images (their compressed layers are the
    image the image tests scanned). An attestation's statement is base64 in its envelope:
    it is yielded decoded too."""
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.stat().st_size <= largest:
            where, content = str(path.relative_to(data)), path.read_bytes()
            yield where, content
            payload = _envelope_payload(content)
            if payload is not None:
                yield f"{where}:payload", payload


def _envelope_payload(content: bytes) -> bytes | None:
    if not content.startswith(b"{") or b'"payload"' not in content:
        return None
    try:
        return base64.b64decode(json.loads(content)["payload"])
    except (ValueError, KeyError, TypeError):
        return None


def _files(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            blob = archive.extractfile(member) if member.isfile() else None
            if blob is None:
                continue
            head = blob.read(512)
            if len(head) == 512 and head[257:262] == b"ustar":  # a layer: a tar of its own
                layer = io.BufferedReader(_Prepended(head, blob), 1 << 20)
                with tarfile.open(fileobj=layer, mode="r|") as files:
                    for entry in files:
                        content = files.extractfile(entry) if entry.isfile() else None
                        if content is not None:
                            yield f"{member.name}:{entry.name}", content.read()
            else:
                yield member.name, head + blob.read()


class _Prepended(io.RawIOBase):
    """A stream whose first bytes were already read."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count], self.head = self.head[:count], self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Prefetched(io.RawIOBase):
    """STREAM read ahead by a thread of its own: the engine's socket is read while the scan
    searches what came before (the search holds the interpreter, a socket's read does not)."""

    CHUNK = 1 << 20

    def __init__(self, stream: IO[bytes], ahead: int = 64) -> None:
        self.chunks: queue.Queue[bytes | BaseException] = queue.Queue(ahead)
        self.pending = b""
        self.thread = threading.Thread(target=self._fill, args=(stream,), daemon=True)
        self.thread.start()

    def _fill(self, stream: IO[bytes]) -> None:
        try:
            while chunk := stream.read(self.CHUNK):
                self.chunks.put(chunk)
            self.chunks.put(b"")
        except BaseException as error:  # handed to the reader, raised there
            self.chunks.put(error)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self.pending:
            item = self.chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                self.chunks.put(b"")  # every later read sees the end too
                return 0
            self.pending = item
        count = min(len(buffer), len(self.pending))
        buffer[:count], self.pending = self.pending[:count], self.pending[count:]
        return count
