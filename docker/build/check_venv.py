"""Build-time gate: the venv must hold exactly the matrix's torch build, or the build fails.

Runs inside the torch stage with the variant's expectations as environment variables.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys


def build_tool_problems() -> list[str]:
    """What torch-2.0-era packages assume: pkg_resources (torch 2.0/2.1's cpp_extension and
    lightning_fabric import it), torch.utils.cpp_extension itself, and ninja, found on the
    PATH the image gives (the venv's bin), without which cpp_extension builds nothing."""
    problems = []
    for module in ("pkg_resources", "torch.utils.cpp_extension"):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any failure to import is the finding
            hint = ": the lock needs a setuptools with pkg_resources (compat.BUILD_TOOL_PINS)" if "pkg_resources" in str(error) else ""
            problems.append(f"import {module} failed ({type(error).__name__}: {error}){hint}")
    os.environ["PATH"] = os.path.join(sys.prefix, "bin") + os.pathsep + os.environ.get("PATH", "")
    try:
        from torch.utils import cpp_extension

        cpp_extension.verify_ninja_availability()
    except Exception as error:  # noqa: BLE001
        problems.append(f"ninja is not usable ({error}): torch.utils.cpp_extension needs it; the lock must hold ninja")
    return problems


def main() -> int:
    problems = []
    expected = {
        "torch": os.environ["TORCH_VERSION"],
        "torchvision": os.environ["TORCHVISION_VERSION"],
        "torchaudio": os.environ["TORCHAUDIO_VERSION"],
    }
    # The distribution's version is what pip pinned; torch.__version__ may add a local
    # label (PyPI's 2.0.1 calls itself 2.0.1+cu117).
    for name, version in expected.items():
        found = importlib.metadata.version(name)
        if found != version:
            problems.append(f"{name} is {found}, the matrix says {version}")

    import torch

    want_cuda = os.environ["CUDA_VERSION"]
    if want_cuda == "none":
        if torch.version.cuda is not None:
            problems.append(f"a CPU-only variant got a CUDA {torch.version.cuda} build of torch")
    elif torch.version.cuda is None or not torch.backends.cuda.is_built():
        problems.append(f"a CUDA {want_cuda} variant got a CPU-only torch")
    elif torch.version.cuda != want_cuda:
        problems.append(f"torch was built for CUDA {torch.version.cuda}, the matrix says {want_cuda}")

    # The GPU code compiled in is what the matrix says (the image's label records it, and
    # `verify` names other variants by it): read from the build, no GPU needed.
    want_archs = os.environ.get("GPU_ARCHS", "")
    if want_archs:
        flags = (getattr(torch._C, "_cuda_getArchFlags", lambda: "")() or "") if torch.version.cuda else ""
        found_archs = " ".join(flags.split()) or "none"
        if found_archs != want_archs:
            problems.append(
                f"torch has GPU code for {found_archs}, the matrix says {want_archs}: "
                "correct GPU_ARCHS in torchenv/model/compat.py for this torch and CUDA"
            )

    # Every native extension loads: the build strips symbol tables from the biggest
    # libraries (triton's included), and a broken one must fail here, not at a user's.
    for module in ("torchvision", "torchaudio", "triton"):
        if importlib.util.find_spec(module) is not None:
            try:
                importlib.import_module(module)
            except Exception as error:  # noqa: BLE001 - any failure to load is the finding
                problems.append(f"import {module} failed: {error}")

    problems += build_tool_problems()

    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        problems.append("pip check: " + " / ".join(check.stdout.split("\n")).strip(" /"))

    variant = os.environ.get("VARIANT", "?")
    if problems:
        print(f"torchenv: error: variant {variant}: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"torchenv: variant {variant}: torch {torch.__version__} (CUDA {torch.version.cuda}) as the matrix says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
