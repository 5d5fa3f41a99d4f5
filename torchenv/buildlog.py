"""Streams BuildKit's plain progress through to the user and, when a build fails, finds
the one line that says why: a torchenv check's own error, or uv's or pip's hash mismatch."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import deque

# "#8 12.34 text" -> "text"
STEP_PREFIX = re.compile(r"^#\d+ (?:\d+\.\d+ )?")
KEEP_LINES = 400


def run_streaming(command: list[str]) -> tuple[int, list[str]]:
    """Runs the build, echoing its output to stderr; returns the exit code and the last lines."""
    tail: deque[str] = deque(maxlen=KEEP_LINES)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(STEP_PREFIX.sub("", line.rstrip("\n")))
    return process.returncode, list(tail)


def failure_reason(lines: list[str]) -> str | None:
    """The cause of a failed build in one line, when the output says it clearly."""
    for line in reversed(lines):
        if "torchenv: error: " in line:
            return line.split("torchenv: error: ", 1)[1].strip()
    for index, line in enumerate(lines):
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
