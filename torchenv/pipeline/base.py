"""The default base image: a Debian root filesystem made by mmdebstrap, imported FROM scratch.

Every variant builds on it, so it is made once per set of inputs and reused: its tag
carries a hash of everything that shapes it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import BuildRequest, RunOptions
from torchenv.errors import TorchenvError
from torchenv.model import names, platforms
from torchenv.model.matrix import Variant
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline import bootstrap, git
from torchenv.pipeline.buildlog import failure_reason

BASE_DOCKERFILE = PROJECT_ROOT / "docker" / "base" / "Dockerfile"

# Python with venv and headers, a C/C++ compiler (torch.compile builds code at run
# time: inductor on the CPU, triton's launcher on the GPU), CA certificates. No more.
PACKAGES = ("ca-certificates", "python3", "python3-venv", "python3-dev", "gcc", "g++")
# Documentation is not needed at run time; copyright files stay, as Debian asks.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
# A machine-id would make every base unique. (The non-root user and the rest come from
# docker/base/adapt.sh, which every base, this one or an upstream image, goes through.)
# /etc/hostname and /etc/resolv.conf are emptied: mmdebstrap copies them, mode and all,
# from wherever it runs (the host's name and name servers have no place in an image, and
# would make a base made on another machine or in a container differ). They and
# /etc/hosts stay as files: build steps mount the engine's over them, and a missing one
# would be created and removed, changing /etc's mtime in every layer.
# The package list the base was made from goes into the image (and `invoke lock` keeps a
# copy next to the locks).
PACKAGE_LIST = "usr/share/torchenv/base-packages.txt"
# Least privilege: no setuid/setgid programs (a container user has no use for su or
# passwd), and no world-writable directory but /tmp.
CUSTOMIZE_HOOKS = (
    'rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id"',
    'find "$1" -xdev -type f -perm /6000 -exec chmod ug-s {} +',
    'chmod 0755 "$1/var/tmp" "$1/run/lock"',
    # Provably unused at run time: static archives nothing links against (inductor builds
    # shared objects against the shared libraries; libgcc.a and libc_nonshared.a stay, the
    # linker needs them), the sanitizer runtimes (no -fsanitize here) and GCC's link-time
    # optimizer with its dump tool (no -flto here). About 130 MB.
    'rm -f "$1"/usr/lib/python3.*/config-*/libpython3*.a "$1"/usr/lib/*-linux-gnu/libc.a "$1"/usr/lib/*-linux-gnu/libm-*.a'
    ' "$1"/usr/lib/*-linux-gnu/libmvec.a "$1"/usr/lib/gcc/*-linux-gnu/*/libstdc++*.a "$1"/usr/lib/gcc/*-linux-gnu/*/lib*san.a'
    ' "$1"/usr/lib/*-linux-gnu/lib*san.so.* "$1"/usr/lib/gcc/*-linux-gnu/*/lto1 "$1"/usr/bin/*lto-dump*',
    ': > "$1/etc/hostname" && : > "$1/etc/resolv.conf" && chmod 0644 "$1/etc/hostname" "$1/etc/resolv.conf"',
    'touch "$1/etc/hosts"',
    f'mkdir -p "$1/usr/share/torchenv" && dpkg-query --admindir="$1/var/lib/dpkg" -W '
    f"-f='${{Package}} ${{Version}} ${{Architecture}}\\n' | LC_ALL=C sort > \"$1/{PACKAGE_LIST}\"",
)
# Used when the project is not a git checkout: any fixed value keeps builds repeatable.
FALLBACK_EPOCH = 1700000000


def source_date_epoch() -> int:
    """The commit time of the last change to the base's definition, not the clock, so the
    base (and everything above it) does not change when unrelated code does."""
    return git.last_change_time("torchenv/pipeline/base.py", "torchenv/pipeline/bootstrap.py", "docker/base/") or FALLBACK_EPOCH


def base_inputs(suite: str, settings: Settings, platform: str = platforms.AMD64) -> dict[str, object]:
    # The architecture joins the inputs only where it is not the first one, so that
    # amd64 bases keep the names they always had.
    architecture = {} if platform == platforms.AMD64 else {"architecture": platforms.arch(platform)}
    return {
        **architecture,
        "suite": suite,
        "packages": PACKAGES,
        "dpkg_options": DPKG_OPTIONS,
        "hooks": CUSTOMIZE_HOOKS,
        "mirror": settings.debian_mirror,
        "snapshot": settings.debian_snapshot,
        "epoch": source_date_epoch(),
        "mmdebstrap": bootstrap.MMDEBSTRAP_VERSION,
        "environment": bootstrap.ENVIRONMENT,
        "dockerfile": BASE_DOCKERFILE.read_text(),
    }


def base_reference(suite: str, settings: Settings, platform: str = platforms.AMD64) -> str:
    digest = hashlib.sha256(json.dumps(base_inputs(suite, settings, platform), sort_keys=True).encode()).hexdigest()
    name = suite if platform == platforms.AMD64 else f"{suite}-{platforms.arch(platform)}"
    return f"{names.BASE_REPOSITORY}:{name}-{digest[:12]}"


def variant_base(variant: Variant, settings: Settings) -> str:
    """The image VARIANT builds on: the base of its Debian suite (made when missing), or the
    upstream image it names."""
    return ensure_base(variant.debian_suite, settings, variant.platform) if variant.debian_suite else variant.base


def ensure_base(suite: str, settings: Settings, platform: str = platforms.AMD64) -> str:
    """The base image for a Debian suite and platform; built only when no image of these inputs exists."""
    reference = base_reference(suite, settings, platform)
    if engine.get().image_id(reference):
        return reference
    emulated = "" if platform == platforms.host_platform() else ", emulated: about 3 minutes"
    print(f"torchenv: making the Debian {suite} {platform} base with mmdebstrap (once{emulated or '; about a minute'})", flush=True)
    return make_base(suite, settings, reference, platform=platform)


def make_base(
    suite: str,
    settings: Settings,
    reference: str,
    no_cache: bool = False,
    platform: str = platforms.AMD64,
    packages: tuple[str, ...] = PACKAGES,
) -> str:
    """Bootstraps the root filesystem (with PACKAGES) and imports it as the image REFERENCE."""
    platforms.require_runnable(platform)  # maintainer scripts run inside the new root
    epoch = base_inputs(suite, settings, platform)["epoch"]
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="base-", dir=settings.work_dir) as context:
        rootfs = Path(context) / "rootfs.tar"
        spec = bootstrap.RootfsSpec(suite, platform, packages, DPKG_OPTIONS, CUSTOMIZE_HOOKS)
        bootstrap.make_rootfs(spec, settings, rootfs, epoch)
        shutil.copy(BASE_DOCKERFILE, Path(context) / "Dockerfile")
        request = BuildRequest(
            context=Path(context),
            platform=platform,
            build_args={"SOURCE_DATE_EPOCH": str(epoch)},
            labels={Label.BASE: suite},
            tags=(reference,),
            no_cache=no_cache,
        )
        result = engine.get().build(request, echo=False)
        if result.image_id is None:
            reason = failure_reason(list(result.tail)) or (result.tail[-1] if result.tail else "no output")
            raise TorchenvError(f"importing the {suite} base into the engine failed: {reason}")
    return reference


def debian_packages(reference: str, platform: str = platforms.AMD64) -> str:
    """The "name version architecture" lines of every Debian package a base image holds,
    as dpkg knows them (a base made here and an upstream one alike), sorted."""
    query = "dpkg-query -W -f='${Package} ${Version} ${Architecture}\\n' | LC_ALL=C sort"
    return engine.get().output_of(reference, ["sh", "-c", query], RunOptions(platform=platform))


def package_list(reference: str, platform: str = platforms.AMD64) -> str:
    """The "name version architecture" lines a base image was made from."""
    return engine.get().output_of(reference, ["cat", f"/{PACKAGE_LIST}"], RunOptions(platform=platform))
