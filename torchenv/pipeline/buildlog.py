"""When a build fails, the one line in BuildKit's output that says why: a torchenv check's
own error, or uv's or pip's hash mismatch. (The engine streams the output and keeps its tail.)"""

from __future__ import annotations

import re


def failure_reason(lines: list[str]) -> str | None:
    """The cause of a failed build in one line, when the output says it clearly."""
    for line in reversed(lines):
        if "torchenv: error: " in line:
            return line.split("torchenv: error: ", 1)[1].strip()
    for index, line in enumerate(lines):
        if "no space left on device" in line.lower():
            return (
                "the engine's disk filled up during the build (no space left on device); free space on Docker's "
                "data root (invoke clean removes torchenv's images and cache, docker builder prune the rest) and retry"
            )
        if "DO NOT MATCH THE HASHES" in line:
            return _hash_mismatch(lines[index + 1 : index + 12])
        if match := UV_HASH_MISMATCH.search(line):
            return _uv_hash_mismatch(match.group(1), lines[index + 1 : index + 8])
    return None


# uv (the venv's installer): "Hash mismatch for `idna==3.20`", then Expected: and Computed:
# each followed by a sha256 line.
UV_HASH_MISMATCH = re.compile(r"Hash mismatch for `([^`]+)`")


def _uv_hash_mismatch(package: str, block: list[str]) -> str:
    hashes = [match.group(1) for line in block if (match := re.search(r"sha256:([0-9a-f]{64})", line))]
    expected, got = [*hashes, "?", "?"][:2]
    return f"{package} does not match its hash in the lock (expected sha256 {expected[:16]}..., downloaded {got[:16]}...)"


def _hash_mismatch(block: list[str]) -> str:
    package = expected = got = "?"
    for line in block:
        if match := re.match(r"^\s*(\S+==\S+) from ", line):
            package = match.group(1)
        elif match := re.search(r"Expected sha256 (\w+)", line):
            expected = match.group(1)
        elif match := re.search(r"Got\s+(\w+)", line):
            got = match.group(1)
            break
    return f"{package} does not match its hash in the lock (expected sha256 {expected[:16]}..., downloaded {got[:16]}...)"
