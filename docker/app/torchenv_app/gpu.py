"""The GPUs this app runs on: the host's NVIDIA driver (asked without torch, whose answer
is a vague warning), the devices torch sees and whether this torch has code for them."""

from __future__ import annotations

import ctypes
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from torchenv_app import archs, support


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


# ---- GPU architectures ----------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    capability: archs.Capability


def visible_devices() -> list[Device]:
    """The GPUs torch sees, with their compute capabilities ([] without any)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's generic driver and capability warnings; ours are precise
        if not torch.cuda.is_available():
            return []
        count = torch.cuda.device_count()
        return [Device(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i))) for i in range(count)]


def compiled_archs() -> list[str]:
    """The GPU code compiled into this torch (sm_86, compute_90, ...); [] for a CPU-only build.
    Read from the build itself, so it is right with or without a GPU."""
    import torch

    if torch.version.cuda is None:
        return []
    flags = getattr(torch._C, "_cuda_getArchFlags", lambda: "")()
    return flags.split() if flags else list(torch.cuda.get_arch_list())


def variant_archs() -> dict[str, list[str]]:
    """Every CUDA variant's GPU architectures, by name."""
    return {name: list(facts["gpu_archs"]) for name, facts in support.variants().items() if facts.get("gpu_archs")}


def unsupported(devices: list[Device], compiled: list[str]) -> str | None:
    """One line on the first GPU this torch has no code for, naming the variants that fit;
    None if all fit, or when the build names no CUDA code (a ROCm torch: not ours to judge)."""
    if not compiled:
        return None
    for device in devices:
        if archs.runs_on(compiled, device.capability):
            continue
        fitting = archs.fitting_variants(variant_archs(), device.capability)
        advice = (
            "use the " + " or ".join(fitting) + " variant" + ("s" if len(fitting) > 1 else "")
            if fitting
            else "no torchenv variant has code for it; a newer torch release is needed"
        )
        return (
            f"GPU {device.index} ({device.name}, compute capability {archs.describe(device.capability)}) cannot run this torch, "
            f"built for {archs.span(compiled)}: {advice}"
        )
    return None


def auto_nproc() -> int:
    """torchrun's "auto": a process per visible GPU, else per core."""
    return len(visible_devices()) or os.cpu_count() or 1
