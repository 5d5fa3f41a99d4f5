"""Where torch writes compiled code and then loads it: inductor's and triton's caches
(torch.compile) and cpp_extension's build folder (load, load_inline, DeepSpeed's ops).

The image points all three at /tmp, writable by any UID. A shared library can only be
loaded from a mount that allows execution, and Docker's default `--tmpfs /tmp` is noexec:
there the load fails deep inside torch ("failed to map segment from shared object"). So
before anything compiles, the caches are moved to a writable place that allows execution,
if there is one; if there is none, the caller refuses in one line that names the fix.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each cache variable and the folder it gets under a place of our choosing (in MOVED_INTO
# there: a home or working folder is often the user's own project).
CACHES: dict[str, str] = {
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
    "TORCH_EXTENSIONS_DIR": "torch_extensions",
}

MOVED_INTO = ".torchenv-cache"

FIX = (
    "run the container with --tmpfs /tmp:exec (compose: tmpfs /tmp:exec; Kubernetes: an emptyDir on /tmp), "
    "or point TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR and TORCH_EXTENSIONS_DIR at a writable directory on an exec mount"
)


@dataclass(frozen=True)
class Place:
    path: str
    writable: bool
    executable: bool

    @property
    def usable(self) -> bool:
        return self.writable and self.executable

    def describe(self) -> str:
        if not self.writable:
            return f"{self.path} is not writable"
        return f"{self.path} is on a noexec mount"


def existing_ancestor(path: str) -> Path:
    """PATH or its nearest folder that exists (a cache folder is made when first used)."""
    current = Path(path).absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def examine(path: str) -> Place:
    """Whether compiled code could be written under PATH and loaded from there."""
    try:
        folder = existing_ancestor(path)
        flags = os.statvfs(folder).f_flag
    except OSError:  # a folder it may not look into, a working folder that is gone
        return Place(path, False, False)
    writable = not flags & os.ST_RDONLY and os.access(folder, os.W_OK | os.X_OK)
    # ST_NOEXEC is Linux's (the images'); elsewhere the app runs as plain Python.
    return Place(path, writable, not flags & getattr(os, "ST_NOEXEC", 0))


def candidates(environ: Mapping[str, str]) -> list[str]:
    """Writable places worth trying, in order: the usual temporary ones, then the home."""
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    found = [environ.get("TMPDIR", ""), "/tmp", "/var/tmp", environ.get("HOME", ""), here]
    unique: list[str] = []
    for path in found:
        if path and path not in unique:
            unique.append(path)
    return unique


def configured(environ: Mapping[str, str], names: Iterable[str] = CACHES) -> dict[str, str]:
    """The cache folders in effect (a variable that is unset uses its default under /tmp)."""
    return {name: environ.get(name) or os.path.join("/tmp", CACHES[name]) for name in names}


def prepare(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Makes every cache folder one that compiled code can be loaded from, moving those that
    cannot to the first usable candidate (in ENVIRON, os.environ by default, so child
    processes get it too). Returns None when all are usable, else the one-line reason."""
    environ = os.environ if environ is None else environ
    unusable = {name: place for name, path in configured(environ).items() if not (place := examine(path)).usable}
    if not unusable:
        return None
    for path in candidates(environ):
        if examine(path).usable:
            for name in unusable:
                environ[name] = os.path.join(path, MOVED_INTO, CACHES[name])
            return None
    problems = sorted({place.describe() for place in unusable.values()})
    tried = ", ".join(candidates(environ))
    return f"compiled code cannot be loaded here: {'; '.join(problems)}, and no writable place allows execution (tried {tried}): {FIX}"


# What a program calls to build and load an extension (DeepSpeed's op builders call load).
EXTENSION_LOADERS = ("load", "load_inline")
EXTENSION_MODULE = "torch.utils.cpp_extension"


class RefuseExtensionLoads(importlib.abc.MetaPathFinder):
    """Imports torch.utils.cpp_extension as usual, then makes its loaders raise PROBLEM."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != EXTENSION_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module
        problem = self.problem

        def exec_module(module: Any) -> None:
            run_module(module)
            for name in EXTENSION_LOADERS:
                original = getattr(module, name, None)
                if callable(original):
                    setattr(module, name, refusing(original, problem))

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


class CompiledCodeUnloadable(RuntimeError):
    """What an extension load raises where no writable place can load compiled code."""


def refusing(original: Any, problem: str) -> Any:
    """ORIGINAL, unless compiled code still cannot be loaded when it is called: the program
    may have pointed TORCH_EXTENSIONS_DIR, or this call's build_directory, at an exec mount."""

    @functools.wraps(original)
    def refuse(*args: Any, **kwargs: Any) -> Any:
        build_directory = kwargs.get("build_directory")
        if (build_directory and examine(str(build_directory)).usable) or prepare() is None:
            return original(*args, **kwargs)
        raise CompiledCodeUnloadable(problem)

    return refuse


def one_line_hook(previous: Any) -> Any:
    """sys.excepthook: an uncaught refusal is its one line on stderr, not a traceback."""

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        if isinstance(error, CompiledCodeUnloadable):
            print(f"torchenv: error: {error}", file=sys.stderr)
        else:
            previous(kind, error, trace)

    return hook


def refuse_loads_where_needed() -> None:
    """At interpreter start: move the caches where needed; where no place can load compiled
    code, extension loads refuse with the one line (torch.compile callers check prepare())."""
    problem = prepare()
    if problem and EXTENSION_MODULE not in sys.modules:
        sys.meta_path.insert(0, RefuseExtensionLoads(problem))
        sys.excepthook = one_line_hook(sys.excepthook)
