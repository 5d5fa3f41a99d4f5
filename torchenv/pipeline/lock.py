"""`invoke lock`: lock each variant (torchenv.locking resolves it) and record the package
list of the Debian bases they build on, which takes making the base."""

from __future__ import annotations

import sys

from torchenv import display_path, engine, statefiles
from torchenv.errors import TorchenvError
from torchenv.locking import wheels
from torchenv.locking.locks import base_list_path, locked_packages, read_lock, write_lock
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.base import ensure_base, package_list


def lock_targets(matrix: Matrix, chosen: list[Variant], platform: str | None) -> list[Variant]:
    """What `invoke lock` locks: the chosen variants for one platform, or every platform of them."""
    if platform:
        return chosen
    names = {entry.name for entry in chosen}
    return [entry for entry in matrix.every_build() if entry.name in names]


def lock_variants(variants: list[Variant], settings: Settings) -> list[str]:
    """Locks each variant whose wheel source answers, and records the base package list of
    their Debian suites; one variant that cannot be locked fails in one line, several say
    which on stderr and fail at the end."""
    lockable, failures = [], []
    for variant in variants:
        try:
            wheels.require_reachable(variant, settings)
            lockable.append(variant)
        except TorchenvError as error:
            if len(variants) == 1:
                raise
            failures.append(error)
            print(f"torchenv: error: {error}", file=sys.stderr)
    done = []
    for suite, platform in sorted({(variant.debian_suite, variant.platform) for variant in lockable if variant.debian_suite}):
        engine.get().require()
        path = base_list_path(suite, settings.lock_dir, platform)
        statefiles.write_text(path, package_list(ensure_base(suite, settings, platform), platform))
        done.append(f"recorded the {suite} {platform} base's packages in {display_path(path)}")
    for variant in lockable:
        write_lock(variant, settings)
        lock = read_lock(variant, settings.lock_dir)
        assert lock is not None
        done.append(f"locked {variant.name} for {variant.platform}: {len(locked_packages(lock))} packages in {display_path(lock.path)}")
    if failures:
        print("\n".join(f"torchenv: {line}" for line in done))
        raise TorchenvError(f"{len(failures)} of {len(variants)} variants could not be locked (see above)")
    return done
