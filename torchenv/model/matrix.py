"""Loads images/matrix.toml and rejects anything PyTorch never shipped, in one line."""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv import PROJECT_ROOT, display_path
from torchenv.errors import TorchenvError
from torchenv.model import compat, platforms

DEFAULT_MATRIX = PROJECT_ROOT / "images" / "matrix.toml"

TOP_LEVEL_KEYS = ("default_variant", "defaults", "variants")
VARIANT_KEYS = (
    "torch", "torchvision", "torchaudio", "python", "cuda", "wheel_source", "base", "allow_unpinned_base", "platforms", "per_platform",
)  # fmt: skip
OPTIONAL_KEYS = {"allow_unpinned_base": False}
# What one platform of a variant may set differently (its own wheels and where they come from).
PER_PLATFORM_KEYS = ("torch", "torchvision", "torchaudio", "wheel_source")
# A variant's name becomes an image tag and a Kubernetes label value (63 at most, a letter
# or digit at each end), with "-arm64" or a project's name added: 40 leaves room.
VARIANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,38}[a-z0-9])?")
MMDEBSTRAP_PREFIX = "mmdebstrap:"


@dataclass(frozen=True)
class Variant:
    name: str
    torch: str
    torchvision: str
    torchaudio: str
    python: str
    cuda: str
    wheel_source: str
    base: str
    # An upstream base named by a tag alone can change under the same name.
    allow_unpinned_base: bool = False
    # The platform this entry builds for, and all the platforms of the variant.
    platform: str = platforms.AMD64
    platforms: tuple[str, ...] = (platforms.AMD64,)

    @property
    def arch(self) -> str:
        return platforms.arch(self.platform)

    @property
    def build_name(self) -> str:
        """The variant's name, with the architecture for any platform but linux/amd64:
        names its lock ("cpu-arm64.txt") and test ids."""
        return self.name if self.platform == platforms.AMD64 else f"{self.name}-{self.arch}"

    @property
    def local_name(self) -> str:
        """The tag of the image built here: the variant's name for the host's platform,
        with the architecture for an emulated one."""
        return self.name if self.platform == platforms.host_platform() else f"{self.name}-{self.arch}"

    @property
    def torch_release(self) -> str:
        """torch's version without the local label: "2.0.1+cu118" -> "2.0.1"."""
        return self.torch.split("+")[0]

    @property
    def python_platform(self) -> str:
        """The wheels this build runs (machine and manylinux tag of its base's glibc), as uv names them."""
        return platforms.python_platform(self.platform, compat.glibc_of_base(self.base))

    @property
    def is_cuda(self) -> bool:
        return self.cuda != compat.CPU_ONLY

    @property
    def min_driver(self) -> str | None:
        return compat.min_driver(self.cuda)

    @property
    def gpu_archs(self) -> tuple[str, ...]:
        """The GPU code of its torch build (sm_86, ...); () for a CPU-only build."""
        return compat.gpu_archs(self.torch_release, self.cuda)

    @property
    def pytorch_channel(self) -> str | None:
        """The PyTorch index channel the wheels come from, or None for PyPI."""
        if self.wheel_source == compat.PYPI:
            return None
        return self.wheel_source.removeprefix(compat.PYTORCH_PREFIX)

    @property
    def debian_suite(self) -> str | None:
        """The Debian suite of a base built here, or None for an upstream base image."""
        if self.base.startswith(MMDEBSTRAP_PREFIX):
            return self.base.removeprefix(MMDEBSTRAP_PREFIX)
        return None

    @property
    def requirements(self) -> list[str]:
        """The top-level pins pip installs (before locks exist, the resolver fills in the rest).

        numpy<2: torch 2.0/2.1 were compiled against NumPy 1.x and break with NumPy 2. The
        build tools (setuptools with pkg_resources, wheel, ninja): see compat.BUILD_TOOL_PINS.
        """
        release = compat.TORCH_RELEASES[self.torch_release]
        extra = list(release.pypi_extra_pins) if self.wheel_source == compat.PYPI and self.is_cuda else []
        return [
            f"torch=={self.torch}",
            f"torchvision=={self.torchvision}",
            f"torchaudio=={self.torchaudio}",
            "numpy<2",
            *compat.BUILD_TOOL_PINS,
            *extra,
        ]


@dataclass(frozen=True)
class Matrix:
    path: Path
    default_variant: str
    # Each variant as built for its first platform; `get` gives the others.
    variants: dict[str, Variant]
    per_platform: dict[tuple[str, str], Variant]

    def get(self, name: str, platform: str | None = None) -> Variant:
        """The variant NAME for PLATFORM (default: the host's, where the variant has it)."""
        if name not in self.variants:
            raise TorchenvError(
                f"unknown variant '{name}'; nearest: {nearest(name, self.variants)} "
                f"(variants: {', '.join(self.variants)}; see `invoke list`)"
            )
        variant = self.variants[name]
        platform = platform or default_platform(variant)
        if (name, platform) not in self.per_platform:
            raise TorchenvError(
                f"variant {name} is not built for {platform}; its platforms: {', '.join(variant.platforms)} "
                f"(nearest: --platform {nearest(platform, variant.platforms)})"
            )
        return self.per_platform[(name, platform)]

    def select(self, name: str | None, all_variants: bool = False, platform: str | None = None) -> list[Variant]:
        """What a command acts on: --all, --variant NAME, or the default; for --platform or the
        host's platform (a variant without the host's platform: its first one). With --all and
        --platform, the variants without that platform are left out."""
        if not all_variants:
            return [self.get(name or self.default_variant, platform)]
        if platform is None:
            return [self.get(variant_name) for variant_name in self.variants]
        chosen = [variant for (_, entry_platform), variant in self.per_platform.items() if entry_platform == platform]
        if not chosen:
            raise TorchenvError(f"no variant is built for {platform}; platforms in the matrix: {', '.join(all_platforms(self))}")
        return chosen

    def every_build(self) -> list[Variant]:
        """Every variant on every one of its platforms."""
        return list(self.per_platform.values())


def default_platform(variant: Variant) -> str:
    host = platforms.host_platform()
    return host if host in variant.platforms else variant.platforms[0]


def all_platforms(matrix: Matrix) -> list[str]:
    return sorted({platform for _, platform in matrix.per_platform})


def nearest(word: str, choices: Any) -> str:
    """The choice a user most likely meant: the longest shared prefix first ("cu999" ->
    a cu* variant, not "cpu"), then overall similarity, then the later (newer) one."""
    choices = list(choices)

    def closeness(indexed: tuple[int, str]) -> tuple[int, float, int]:
        index, choice = indexed
        prefix = next((i for i, (a, b) in enumerate(zip(word, choice, strict=False)) if a != b), min(len(word), len(choice)))
        return prefix, difflib.SequenceMatcher(None, word, choice).ratio(), index

    return max(enumerate(choices), key=closeness)[1]


def load_matrix(path: Path = DEFAULT_MATRIX) -> Matrix:
    where = display_path(path.resolve())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TorchenvError(f"{where}: matrix file not found; restore it from git or pass --matrix PATH") from None
    except UnicodeDecodeError as error:
        raise TorchenvError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise TorchenvError(f"{where}: TOML syntax error: {error}; fix that line") from None
    return parse_matrix(raw, where, path)


def parse_matrix(raw: dict[str, Any], where: str, path: Path) -> Matrix:
    _reject_unknown(raw, TOP_LEVEL_KEYS, f"{where}: top level")
    defaults = raw.get("defaults", {})
    _require_table(defaults, f"{where}: [defaults]")
    _reject_unknown(defaults, VARIANT_KEYS, f"{where}: [defaults]")
    tables = raw.get("variants")
    if tables is None:
        raise TorchenvError(f"{where}: no [variants.NAME] tables; add at least one variant")
    _require_table(tables, f"{where}: variants")
    if not tables:
        raise TorchenvError(f"{where}: no [variants.NAME] tables; add at least one variant")

    per_platform = {
        (name, variant.platform): variant for name, table in tables.items() for variant in _parse_variant(name, defaults, table, where)
    }
    variants = {}
    for (name, _), variant in per_platform.items():
        variants.setdefault(name, variant)

    default_variant = raw.get("default_variant")
    if default_variant is None:
        raise TorchenvError(f'{where}: missing key default_variant; add e.g. default_variant = "{next(iter(variants))}"')
    _require_string(default_variant, "default_variant", where, example=next(iter(variants)))
    if default_variant not in variants:
        raise TorchenvError(f"{where}: default_variant '{default_variant}' is not a variant; nearest: {nearest(default_variant, variants)}")
    return Matrix(path=path, default_variant=default_variant, variants=variants, per_platform=per_platform)


def _parse_variant(name: str, defaults: dict[str, Any], table: Any, where: str) -> list[Variant]:
    """The variant once per platform, each checked against what PyTorch built for it."""
    context = f"{where}: [variants.{name}]"
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise TorchenvError(
            f"{context}: a variant name must be lowercase letters, digits, '.', '_' or '-', a letter or digit at each end, "
            "40 at most (it becomes an image tag and a Kubernetes label value)"
        )
    _require_table(table, context)
    _reject_unknown(table, VARIANT_KEYS, context)
    merged = {**OPTIONAL_KEYS, **defaults, **table}
    variant_platforms = _parse_platforms(merged.pop("platforms", [platforms.AMD64]), context)
    overrides = merged.pop("per_platform", {})
    _require_table(overrides, f"{context}: per_platform")
    for platform, override in overrides.items():
        if platform not in variant_platforms:
            raise TorchenvError(
                f'{context}: per_platform."{platform}" is not one of its platforms ({", ".join(variant_platforms)}); add it to platforms'
            )
        _require_table(override, f'{context}: per_platform."{platform}"')
        _reject_unknown(override, PER_PLATFORM_KEYS, f'{context}: per_platform."{platform}"')
    return [
        _parse_one(name, {**merged, **overrides.get(platform, {})}, platform, variant_platforms, context) for platform in variant_platforms
    ]


def _parse_platforms(value: Any, context: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise TorchenvError(f'{context}: platforms must be a list of strings like ["linux/amd64"], got {_type_name(value)} {value!r}')
    for platform in value:
        if platform not in platforms.SUPPORTED:
            raise TorchenvError(
                f'{context}: platform "{platform}" is not one torchenv builds; nearest: "{nearest(platform, platforms.SUPPORTED)}"'
            )
    if len(set(value)) != len(value):
        raise TorchenvError(f"{context}: platforms lists a platform twice: {value!r}")
    return tuple(value)


def _parse_one(name: str, merged: dict[str, Any], platform: str, variant_platforms: tuple[str, ...], context: str) -> Variant:
    for key in VARIANT_KEYS:
        if key in ("platforms", "per_platform"):
            continue
        if key not in merged:
            raise TorchenvError(f'{context}: missing key {key}; add e.g. {key} = "{_EXAMPLES[key]}"')
        if key in OPTIONAL_KEYS:
            if not isinstance(merged[key], bool):
                raise TorchenvError(f"{context}: {key} must be true or false, got {_type_name(merged[key])} {merged[key]!r}")
        else:
            _require_string(merged[key], key, context, example=_EXAMPLES[key])
    variant = Variant(name=name, **merged, platform=platform, platforms=variant_platforms)
    if len(variant_platforms) > 1:
        context = f"{context} on {platform}"
    _check_release(variant, context)
    return variant


_EXAMPLES = {
    "torch": "2.0.1",
    "torchvision": "0.15.2",
    "torchaudio": "2.0.2",
    "python": "3.11",
    "cuda": "11.7",
    "wheel_source": "pypi",
    "base": "mmdebstrap:bookworm",
}


def _check_release(variant: Variant, context: str) -> None:
    """Checks the variant against what PyTorch really built."""
    release_name, _, torch_label = variant.torch.partition("+")
    release = compat.TORCH_RELEASES.get(release_name)
    if release is None:
        raise TorchenvError(
            f"{context}: torch {variant.torch} is not a release torchenv knows; "
            f"nearest: {nearest(release_name, compat.TORCH_RELEASES)} (known: {', '.join(compat.TORCH_RELEASES)})"
        )
    if variant.cuda not in release.builds:
        others = [r for r, rel in compat.TORCH_RELEASES.items() if variant.cuda in rel.builds]
        alternative = f", or torch {others[-1]} for CUDA {variant.cuda}" if others else ""
        raise TorchenvError(
            f"{context}: torch {release_name} was never built for CUDA {variant.cuda} "
            f"(its builds: {', '.join(_build_name(b) for b in release.builds)}); "
            f'nearest: cuda = "{_nearest_version(variant.cuda, release.builds)}"{alternative}'
        )
    _check_wheel_source(variant, release, torch_label, context)
    for package, expected in (("torchvision", release.torchvision), ("torchaudio", release.torchaudio)):
        version, _, label = getattr(variant, package).partition("+")
        if version != expected or label != torch_label:
            wanted = expected + (f"+{torch_label}" if torch_label else "")
            raise TorchenvError(
                f'{context}: {package} {getattr(variant, package)} does not belong with torch {variant.torch}; use {package} = "{wanted}"'
            )
    _check_python(variant, release, context)


def _check_wheel_source(variant: Variant, release: compat.TorchRelease, torch_label: str, context: str) -> None:
    channel = compat.channel_for_build(variant.cuda)
    if variant.is_cuda and variant.platform not in compat.CUDA_PLATFORMS:
        raise TorchenvError(
            f"{context}: PyTorch {variant.torch_release} has no CUDA build for {variant.platform}; "
            f'CUDA variants are {", ".join(compat.CUDA_PLATFORMS)} only: use platforms = ["{compat.CUDA_PLATFORMS[0]}"]'
        )
    if variant.wheel_source == compat.PYPI:
        pypi_build = compat.pypi_build(release, variant.platform)
        if variant.cuda != pypi_build:
            raise TorchenvError(
                f"{context}: PyPI serves torch {variant.torch_release} for {variant.platform} only as the {_build_name(pypi_build)} build; "
                f'for {_build_name(variant.cuda)} use wheel_source = "{compat.PYTORCH_PREFIX}{channel}" '
                f'and torch = "{variant.torch_release}+{channel}"'
            )
        if torch_label:
            raise TorchenvError(
                f"{context}: PyPI names its torch {variant.torch_release} without a local label; "
                f'use torch = "{variant.torch_release}" (and torchvision, torchaudio without "+{torch_label}")'
            )
        return
    if not variant.wheel_source.startswith(compat.PYTORCH_PREFIX):
        raise TorchenvError(f'{context}: unknown wheel_source "{variant.wheel_source}"; use "pypi" or "{compat.PYTORCH_PREFIX}{channel}"')
    if variant.pytorch_channel != channel:
        raise TorchenvError(
            f'{context}: wheel_source "{variant.wheel_source}" does not serve the {_build_name(variant.cuda)} build; '
            f'use wheel_source = "{compat.PYTORCH_PREFIX}{channel}"'
        )
    if torch_label != channel:
        raise TorchenvError(
            f"{context}: the PyTorch {channel} index names its wheel torch {variant.torch_release}+{channel}; "
            f'use torch = "{variant.torch_release}+{channel}"'
        )


def _check_python(variant: Variant, release: compat.TorchRelease, context: str) -> None:
    match = re.fullmatch(r"3\.(\d+)", variant.python)
    low, high = release.python_min, release.python_max
    span = f"{low[0]}.{low[1]}-{high[0]}.{high[1]}"
    if not match:
        raise TorchenvError(f'{context}: python "{variant.python}" is not of the form "3.N"; torch {variant.torch_release} supports {span}')
    minor = int(match.group(1))
    if not low[1] <= minor <= high[1]:
        closest = min(max(minor, low[1]), high[1])
        raise TorchenvError(
            f'{context}: Python {variant.python} is outside torch {variant.torch_release}\'s range {span}; nearest: python = "3.{closest}"'
        )
    suite = variant.debian_suite
    if suite is None:
        if not variant.base.strip() or any(c.isspace() for c in variant.base):
            raise TorchenvError(
                f'{context}: base "{variant.base}" is not an image reference; use "mmdebstrap:bookworm" or e.g. "python:3.11-slim-bookworm"'
            )
        if "@sha256:" not in variant.base and not variant.allow_unpinned_base:
            raise TorchenvError(
                f'{context}: base "{variant.base}" is not pinned by digest, so it can change under the same name; '
                f'use "{variant.base}@sha256:<digest>" (docker buildx imagetools inspect {variant.base} shows it) '
                "or set allow_unpinned_base = true"
            )
        return
    shipped = compat.DEBIAN_PYTHON.get(suite)
    if shipped is None:
        raise TorchenvError(
            f'{context}: base "{variant.base}": unknown Debian suite; nearest: "{MMDEBSTRAP_PREFIX}{nearest(suite, compat.DEBIAN_PYTHON)}"'
        )
    if shipped != variant.python:
        fitting = [s for s, py in compat.DEBIAN_PYTHON.items() if py == variant.python]
        alternative = f' or base = "{MMDEBSTRAP_PREFIX}{fitting[0]}"' if fitting else " or an upstream base image with that Python"
        raise TorchenvError(
            f'{context}: Debian {suite} ships Python {shipped}, not {variant.python}; use python = "{shipped}"{alternative}'
        )


def _build_name(cuda: str) -> str:
    return "CPU-only" if cuda == compat.CPU_ONLY else f"CUDA {cuda}"


def _nearest_version(wanted: str, builds: tuple[str, ...]) -> str:
    cuda_builds = [b for b in builds if b != compat.CPU_ONLY]
    if wanted == compat.CPU_ONLY or not cuda_builds:
        return builds[0]

    def distance(build: str) -> float:
        return abs(float(build) - float(wanted)) if _is_number(wanted) else 0.0

    return min(reversed(cuda_builds), key=distance)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], context: str) -> None:
    for key in table:
        if key not in allowed:
            raise TorchenvError(f"{context}: unknown key '{key}'; nearest: {nearest(key, allowed)} (allowed: {', '.join(allowed)})")


def _require_table(value: Any, context: str) -> None:
    if not isinstance(value, dict):
        raise TorchenvError(f"{context} must be a table, got {_type_name(value)} {value!r}")


def _require_string(value: Any, key: str, context: str, example: str) -> None:
    if not isinstance(value, str):
        raise TorchenvError(f'{context}: {key} must be a string like "{example}", got {_type_name(value)} {value!r}')


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )
