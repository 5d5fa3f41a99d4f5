"""`verify`: proves the environment works, check by check, and exits non-zero if one fails.

Expectations come from the image's TORCHENV_* environment (set from the matrix at build
time), so the same code verifies every variant.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict

from torchenv_app import archs, cluster, codecache, gpu, preflight, support
from torchenv_app.checks import FAIL, OK, SKIP, WARN, Check
from torchenv_app.support import compile_unsupported


def expected(name: str) -> str:
    return os.environ.get(f"TORCHENV_{name.upper()}", "")


def check_python() -> Check:
    found = "{}.{}.{}".format(*sys.version_info[:3])
    want = expected("python")
    ok = not want or found.startswith(want + ".")
    return Check("python", OK if ok else FAIL, found if ok else f"{found}, expected {want}")


def check_packages() -> Check:
    import torch

    # Compare the installed distributions (what pip pinned); torch.__version__ may carry a
    # local label on top (PyPI's 2.0.1 calls itself 2.0.1+cu117).
    assert torch.__version__.startswith(importlib.metadata.version("torch"))
    found, wrong = {}, []
    for name in ("torch", "torchvision", "torchaudio"):
        try:
            found[name] = importlib.metadata.version(name)
            module = importlib.import_module(name)
        except Exception as error:  # missing, or built for another torch: either way not usable
            # Outside an image (the app run as plain Python) only torch is required.
            if expected(name):
                wrong.append(f"{name} does not import ({type(error).__name__}: {error}; expected {expected(name)})")
            continue
        assert module.__version__.startswith(found[name])
        if expected(name) and found[name] != expected(name):
            wrong.append(f"{name} {found[name]} (expected {expected(name)})")
    detail = ", ".join(f"{name} {version}" for name, version in found.items())
    return Check("packages", FAIL if wrong else OK, "; ".join(wrong) if wrong else detail)


def check_cuda_build() -> Check:
    import torch

    found = torch.version.cuda or "none"
    want = expected("cuda") or found
    if found != want:
        return Check("cuda build", FAIL, f"torch built for CUDA {found}, expected {want}")
    return Check("cuda build", OK, "CPU-only build" if found == "none" else f"CUDA {found}")


def check_cudnn() -> Check:
    import torch

    if torch.version.cuda is None:
        return Check("cudnn", SKIP, "CPU-only build has no cuDNN")
    if not torch.backends.cudnn.is_available():
        return Check("cudnn", FAIL, "torch was built with CUDA but cuDNN is not available")
    version = torch.backends.cudnn.version()  # loads libcudnn for real
    if not version:
        return Check("cudnn", FAIL, "libcudnn did not load")
    major, minor, patch = version // 1000, version % 1000 // 100, version % 100
    return Check("cudnn", OK, f"{major}.{minor}.{patch} loaded")


def check_gpu() -> Check:
    import torch

    driver = gpu.driver_version()
    minimum = expected("min_driver")
    if driver and minimum and gpu.version_tuple(driver) < gpu.version_tuple(minimum):
        return Check(
            "gpu",
            FAIL,
            f"NVIDIA driver {driver} is too old for CUDA {torch.version.cuda}: this variant needs >= {minimum}; "
            "upgrade the host driver or use an older CUDA variant",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's generic driver warning; we say it better above
        available = torch.cuda.is_available()
    if available:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("gpu", OK, f"{torch.cuda.device_count()} visible: {names} (driver {driver or 'unknown'})")
    required = os.environ.get("TORCHENV_REQUIRE_GPU") == "1"
    if torch.version.cuda is None:
        why = "CPU-only build"
    elif driver:
        why = f"driver {driver} present but no usable device"
    else:
        why = "no NVIDIA driver in this container (run with --gpus all or the compose gpu profile)"
    return Check("gpu", FAIL if required else SKIP, f"none visible: {why}")


def check_gpu_arch() -> Check:
    """Each visible GPU against the GPU code compiled into this torch: without code for its
    architecture every kernel fails with "no kernel image is available"."""
    import torch

    if torch.version.cuda is None:
        return Check("gpu arch", SKIP, "CPU-only build")
    compiled = gpu.compiled_archs()
    devices = gpu.visible_devices()
    if not devices:
        runs_on = ", ".join(archs.generations(compiled))
        return Check("gpu arch", SKIP, f"no GPU visible; this torch has code for {archs.span(compiled)} ({runs_on})")
    if problem := gpu.unsupported(devices, compiled):
        return Check("gpu arch", FAIL, problem)
    described = ", ".join(f"{device.name} ({archs.describe(device.capability)})" for device in devices)
    return Check("gpu arch", OK, f"{described}: runs this torch's code ({archs.span(compiled)})")


def cuda_devices_to_check() -> list[str]:
    """ "cuda" when a GPU is visible that this torch has code for (the gpu arch check says
    why not otherwise): a kernel run on any other would only repeat that failure."""
    devices = gpu.visible_devices()
    return ["cuda"] if devices and gpu.unsupported(devices, gpu.compiled_archs()) is None else []


def check_shm() -> Check:
    """DataLoader worker processes hand their batches over through /dev/shm; Docker gives
    a container 64 MB of it, and a worker dies when a batch does not fit."""
    size = support.shm_bytes()
    advice = "for DataLoader workers run the container with --shm-size 8g (or --ipc host; compose: shm_size)"
    if size is None:
        return Check("shm", WARN, f"no /dev/shm: {advice}")
    shown = support.shown_bytes(size)
    if size < support.SHM_PER_PROCESS:
        return Check("shm", WARN, f"/dev/shm is {shown}: {advice}")
    return Check("shm", OK, f"/dev/shm is {shown}")


def check_matmul() -> Check:
    import torch

    # Small integers: the product is exact in float32, so any difference is a real fault.
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    b = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    want = [[sum(a_row[k] * b_col[k] for k in range(4)) for b_col in zip(*b.tolist())] for a_row in a.tolist()]
    devices = ["cpu", *cuda_devices_to_check()]
    for device in devices:
        got = (a.to(device) @ b.to(device)).cpu().tolist()
        if got != want:
            return Check("matmul", FAIL, f"{device}: got {got}, expected {want}")
    return Check("matmul", OK, "exact on " + ", ".join(devices))


def check_numpy_bridge() -> Check:
    import torch

    try:
        import numpy
    except ImportError:
        if expected("variant"):
            raise
        return Check("numpy bridge", SKIP, "numpy is not installed here (outside an image)")

    array = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    tensor = torch.from_numpy(array)
    back = (tensor * 2).numpy()
    if back.tolist() != (array * 2).tolist():
        return Check("numpy bridge", FAIL, f"torch <-> numpy {numpy.__version__} gave {back.tolist()}")
    return Check("numpy bridge", OK, f"numpy {numpy.__version__} both ways")


def check_compile() -> Check:
    import torch
    import torch._dynamo

    if reason := compile_unsupported():
        return Check("torch.compile", SKIP, reason)
    if problem := codecache.prepare():
        return Check("torch.compile", FAIL, problem)

    def function(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2 + torch.cos(x)

    devices = ["cpu", *cuda_devices_to_check()]
    timings = []
    for device in devices:
        x = torch.linspace(-3, 3, 257, device=device)
        torch._dynamo.reset()
        start = time.perf_counter()
        try:
            compiled = torch.compile(function, backend="inductor")
            got = compiled(x)
        except Exception as error:  # any compiler failure is the finding
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return Check("torch.compile", FAIL, f"{device}: {type(error).__name__}: {first_line[:300]}")
        if not torch.allclose(got, function(x), atol=1e-5):
            return Check("torch.compile", FAIL, f"{device}: compiled result differs from eager")
        timings.append(f"{device} {time.perf_counter() - start:.1f}s")
    return Check("torch.compile", OK, "inductor compiled and matched eager on " + ", ".join(timings))


def check_extensions() -> Check:
    """What torch.utils.cpp_extension (custom ops, DeepSpeed's ops, packages built against
    torch) needs at run time: pkg_resources, ninja, a C++ compiler, a writable place to load
    the built library from; nvcc for CUDA sources (the devel flavour). Compiling one takes
    half a minute, so this check does not (the image tests do)."""
    in_image = bool(expected("variant"))
    if problem := codecache.prepare():
        return Check("extensions", FAIL, problem)
    try:
        import pkg_resources  # noqa: F401 - torch 2.0/2.1's cpp_extension imports it
        from torch.utils import cpp_extension
    except Exception as error:  # any failure to import is the finding
        return Check("extensions", FAIL, f"torch.utils.cpp_extension does not import ({type(error).__name__}: {error})")
    missing = []
    ninja = shutil.which("ninja")
    if ninja is None:
        missing.append("ninja (pip install ninja)")
    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        missing.append(f"a C++ compiler ({compiler})")
    if missing:
        return Check("extensions", FAIL if in_image else WARN, "cpp_extension cannot build: no " + " and no ".join(missing))
    version = subprocess.run([str(ninja), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    where = os.environ.get("TORCH_EXTENSIONS_DIR", "its default folder")
    if cpp_extension.CUDA_HOME:
        cuda = f"CUDA sources with the nvcc of {cpp_extension.CUDA_HOME}"
    elif expected("cuda") not in ("", "none"):
        cuda = "C++ only (CUDA sources need nvcc, which no torchenv image has yet: docs/image.md)"
    else:
        cuda = "C++ only"
    return Check("extensions", OK, f"ninja {version}, {compiler}, built in {where}; {cuda}")


CHECKS: list[Callable[[], Check]] = [
    check_python,
    check_packages,
    check_cuda_build,
    check_cudnn,
    check_gpu,
    check_gpu_arch,
    check_shm,
    check_matmul,
    check_numpy_bridge,
    check_compile,
    check_extensions,
]


def run_checks(skip_compile: bool, distributed: cluster.LaunchPlan | None = None) -> list[Check]:
    results = []
    for check in CHECKS:
        if skip_compile and check is check_compile:
            results.append(Check("torch.compile", SKIP, "skipped by --no-compile"))
            continue
        if distributed and check is check_shm:
            continue  # the distributed checks hold the job's own
        try:
            results.append(check())
        except Exception as error:  # a crashing check is a failed check
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(Check(name, FAIL, f"{type(error).__name__}: {error}"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify", description="Check this torchenv image end to end.")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile check (it takes seconds)")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="also check what a job across nodes needs (run it on every node at once; docs/clusters.md); implied by the launch flags",
    )
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the master's name and the other nodes (--distributed)")
    parser.add_argument("--shm-need", type=preflight.parse_size, help="/dev/shm the job needs, e.g. 8g (default: 1g per process)")
    cluster.add_arguments(parser)
    args = parser.parse_args(argv)

    plan = None
    if args.distributed or any(getattr(args, name) is not None for name in ("nproc", "nnodes", "node_rank", "master", "rdzv")):
        try:
            plan = cluster.plan_from(args, os.environ, gpu.auto_nproc)
        except cluster.ClusterError as error:
            print(f"verify: error: {error}", file=sys.stderr)
            return 2
    results = run_checks(args.no_compile, plan)
    if plan:
        results += preflight.run(plan, args.wait, args.shm_need, os.environ)
    passed = all(result.status != FAIL for result in results)
    if args.json:
        report = {
            "variant": expected("variant"),
            "platform": platform.machine(),
            "passed": passed,
            "shm_bytes": support.shm_bytes(),
            "distributed": asdict(plan) if plan else None,
            "checks": [asdict(result) for result in results],
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"torchenv verify: variant {expected('variant') or '?'} on {platform.machine()}")
        if plan:
            where = f"{plan.engine}: " if plan.engine else ""
            print(f"  {where}node {plan.node_rank} of {plan.nnodes}, {plan.nproc} process(es), rendezvous {plan.rdzv} at {plan.master}")
        for result in results:
            print(f"  {result.status.upper():4}  {result.name:14} {result.detail}")
        print("all checks passed" if passed else "FAILED: " + ", ".join(r.name for r in results if r.status == FAIL))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
