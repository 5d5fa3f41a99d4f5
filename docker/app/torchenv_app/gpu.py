"""What the host's NVIDIA driver is, asked without torch (whose answer is a vague warning)."""

from __future__ import annotations

import ctypes
from pathlib import Path


def driver_version() -> str | None:
    """The driver version ("535.104.05"), or None where no NVIDIA driver is visible."""
    return _from_nvml() or _from_proc()


def _from_nvml() -> str | None:
    # The NVIDIA container runtime injects libnvidia-ml with the "utility" capability.
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
        buffer = ctypes.create_string_buffer(96)
        ok = nvml.nvmlSystemGetDriverVersion(buffer, ctypes.c_uint(len(buffer))) == 0
        nvml.nvmlShutdown()
        return buffer.value.decode() if ok else None
    except AttributeError:
        return None


def _from_proc() -> str | None:
    path = Path("/proc/driver/nvidia/version")
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.count(".") >= 1 and word.replace(".", "").isdigit():
            return word
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())
