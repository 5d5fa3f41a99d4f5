"""Push tested images to a registry, pull them back by digest, and refuse any image whose
labels do not match the matrix and the lock. Credentials come from `docker login` alone."""

from __future__ import annotations

import json
from typing import Any

from torchenv import display_path, engine
from torchenv.build import image_tag
from torchenv.errors import TorchenvError
from torchenv.locks import read_lock
from torchenv.matrix import Matrix, Variant
from torchenv.settings import Settings
from torchenv.tags import tags_for
from torchenv.testrecords import passed_record


def local_tags(image_id: str, settings: Settings) -> list[str]:
    listing = engine.docker("image", "ls", settings.image_name, "--no-trunc", "--format", "{{.Tag}} {{.ID}}").stdout
    return sorted(line.split()[0] for line in listing.splitlines() if line.strip() and line.split()[1] == image_id)


def read_digests(settings: Settings) -> dict[str, Any]:
    path = settings.digests_file
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise TorchenvError(f"{display_path(path)} is not valid JSON (line {error.lineno}); restore it from git") from None


def push(variant: Variant, settings: Settings, registry: str) -> dict[str, Any]:
    """Pushes the variant's image with all its tags; returns the digest record it wrote."""
    tag = image_tag(variant, settings)
    image_id = engine.image_id(tag)
    if image_id is None:
        raise TorchenvError(f"no image {tag} to push; build and test it first: invoke test --variant {variant.name}")
    if passed_record(image_id, settings) is None:
        raise TorchenvError(
            f"{tag} ({image_id[:19]}) has no passing test record; run `invoke test --variant {variant.name}` first, then push"
        )
    repository = f"{registry.rstrip('/')}/{settings.image_name}"
    names = local_tags(image_id, settings)
    aliases = [f"{repository}:{name}" for name in names]
    pushed: list[str] = []
    try:
        for alias in aliases:
            engine.tag(image_id, alias)
        for alias in aliases:
            result = engine.docker("push", "--quiet", alias, check=False)
            if result.returncode != 0:
                reason = engine.last_line(result.stderr) or engine.last_line(result.stdout)
                done = f" ({len(pushed)} of {len(aliases)} tags were pushed before)" if pushed else ""
                raise TorchenvError(
                    f"pushing {alias} failed: {reason}{done}; check that the registry {registry} runs and that "
                    f"`docker login {registry}` succeeded, then rerun"
                )
            pushed.append(alias)
        digests = json.loads(engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", image_id).stdout)
        digest = next(item.split("@", 1)[1] for item in digests if item.startswith(repository + "@"))
    finally:
        for alias in aliases:  # the registry aliases were only a means to push
            engine.docker("image", "rm", alias, check=False)
    labels = engine.image_labels(image_id)
    record = {
        "registry": registry,
        "repository": repository,
        "digest": digest,
        "tags": names,
        "image_id": image_id,
        "lock_sha256": labels.get("io.torchenv.lock-sha256", ""),
    }
    everything = read_digests(settings)
    everything[variant.name] = record
    settings.digests_file.parent.mkdir(parents=True, exist_ok=True)
    settings.digests_file.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")
    return record


def label_mismatches(labels: dict[str, str], variant: Variant, settings: Settings) -> list[str]:
    expected = {
        "io.torchenv.variant": variant.name,
        "io.torchenv.torch": variant.torch,
        "io.torchenv.torchvision": variant.torchvision,
        "io.torchenv.torchaudio": variant.torchaudio,
        "io.torchenv.cuda": variant.cuda,
        "io.torchenv.python": variant.python,
    }
    lock = read_lock(variant, settings.lock_dir)
    if lock is not None:
        expected["io.torchenv.lock-sha256"] = lock.sha256
    return [f"{key} is {labels.get(key, 'missing')!r}, expected {value!r}" for key, value in expected.items() if labels.get(key) != value]


def pull(variant: Variant, matrix: Matrix, settings: Settings, registry: str | None = None) -> str:
    """Pulls the variant's recorded digest, checks it, and tags it as a local build would."""
    record = read_digests(settings).get(variant.name)
    if record is None:
        raise TorchenvError(
            f"no pushed image of {variant.name} is recorded in {display_path(settings.digests_file)}; "
            f"build it: invoke build --variant {variant.name}"
        )
    repository = f"{registry.rstrip('/')}/{settings.image_name}" if registry else record["repository"]
    reference = f"{repository}@{record['digest']}"
    existed = engine.image_id(reference) is not None
    result = engine.docker("pull", "--quiet", reference, check=False)
    if result.returncode != 0:
        raise TorchenvError(
            f"pulling {reference} failed: {engine.last_line(result.stderr)}; check the registry and `docker login`, "
            f"or build it: invoke build --variant {variant.name}"
        )
    image_id = engine.image_id(reference)
    assert image_id is not None
    problems = label_mismatches(engine.image_labels(image_id), variant, settings)
    if problems:
        if not existed:
            engine.docker("image", "rm", reference, check=False)
        raise TorchenvError(f"refusing {reference}: {'; '.join(problems)}; build it instead: invoke build --variant {variant.name}")
    for name in tags_for(image_id, variant, matrix):
        engine.tag(image_id, f"{settings.image_name}:{name}")
    return reference


def pull_first(variant: Variant, matrix: Matrix, settings: Settings) -> str | None:
    """The pulled reference when a prebuilt image with the current lock exists, else None."""
    record = read_digests(settings).get(variant.name)
    lock = read_lock(variant, settings.lock_dir)
    if record is None or lock is None or record.get("lock_sha256") != lock.sha256:
        return None
    try:
        return pull(variant, matrix, settings)
    except TorchenvError as error:
        print(f"torchenv: no usable prebuilt image ({error}); building instead", flush=True)
        return None
