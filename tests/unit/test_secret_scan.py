"""The image scanner of tests/secret_scan.py, on small archives made here."""

from __future__ import annotations

import io
import tarfile

from ..secret_scan import CREDENTIAL_PATTERNS, credentials, scan_archive


def test_the_scan_finds_a_planted_credential() -> None:
    """The scanner itself, on a small image archive: a key in a layer's deleted file and a
    login in the config are both found."""
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        add(tar, "home/user/.ssh/id_ed25519", key)
        add(tar, "home/user/.ssh/.wh.id_rsa", b"")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        add(tar, "blobs/sha256/layer", layer.getvalue())
        add(tar, "blobs/sha256/config", b'{"auths": {"r": {"auth": "dXNlcjpodW50ZXIy"}}, "x": "https://bob:hunter2@example.org"}')
    archive.seek(0)
    found = scan_archive(archive, [b"hunter2"]).credentials
    assert ("blobs/sha256/layer:home/user/.ssh/id_ed25519", b"-----BEGIN OPENSSH PRIVATE KEY-----") in found
    assert ("blobs/sha256/config", b'"auth": "dXNlcjpodW50ZXIy"') in found
    assert ("blobs/sha256/config", b"https://bob:hunter2@example.org") in found


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_the_windowed_search_finds_what_a_whole_file_search_finds() -> None:
    """Credentials are matched in windows around their locators: on a binary-like blob with
    URLs, schemes and keys at its edges, the same matches as the regex over the whole blob."""
    filler = bytes(range(256)) * 400
    planted = [b"https://user:pw@host.example", b"ftp://x://y:z@h.io", b"-----BEGIN EC PRIVATE KEY-----", b"xoxb-0123456789-abc"]
    data = b"git+ssh://a:b@c.d" + b"".join(filler + item for item in planted) + b"://" + filler + b"AKIAABCDEFGHIJKLMNOP"
    for locator, pattern in CREDENTIAL_PATTERNS:
        assert credentials(data, locator, pattern) == [match.group()[:120] for match in pattern.finditer(data)]
