"""Push tested images to a registry, pull them back by digest, and refuse any image whose
labels do not match the matrix and the lock. Credentials come from `docker login` alone."""

from __future__ import annotations

import json
from typing import Any

from torchenv import display_path, engine, zstd_push
from torchenv.build import image_tag
from torchenv.errors import TorchenvError
from torchenv.locks import read_lock
from torchenv.matrix import Matrix, Variant
from torchenv.settings import Settings
from torchenv.tags import short_commit, tags_for
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


def tested_image(variant: Variant, settings: Settings) -> str:
    """The ID of the variant's local image, which must have passed its tests."""
    tag = image_tag(variant, settings)
    image_id = engine.image_id(tag)
    if image_id is None:
        raise TorchenvError(f"no image {tag} to push; build and test it first: invoke test --variant {variant.name}")
    if passed_record(image_id, settings) is None:
        raise TorchenvError(
            f"{tag} ({image_id[:19]}) has no passing test record; run `invoke test --variant {variant.name}` first, then push"
        )
    return image_id


COMPRESSIONS = ("zstd", "gzip")


def push_tags(image_id: str, aliases: list[str], registry: str, settings: Settings, compression: str = "zstd") -> str:
    """Pushes IMAGE_ID under every alias; returns the manifest digest. With gzip the engine
    pushes, through aliases that are local only for the push and removed again, whatever
    happens; with zstd, skopeo pushes (torchenv/zstd_push.py) and no local tag is made."""
    if compression == "zstd":
        return zstd_push.push(image_id, aliases, registry, settings.work_dir)
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
        repository = aliases[0].rsplit(":", 1)[0]
        digests = json.loads(engine.docker("image", "inspect", "--format", "{{json .RepoDigests}}", image_id).stdout)
        return next(item.split("@", 1)[1] for item in digests if item.startswith(repository + "@"))
    finally:
        for alias in aliases:
            engine.docker("image", "rm", alias, check=False)


def platform_record(image_id: str, digest: str) -> dict[str, str]:
    return {"digest": digest, "image_id": image_id, "lock_sha256": engine.image_labels(image_id).get("io.torchenv.lock-sha256", "")}


def push(name: str, matrix: Matrix, settings: Settings, registry: str, compression: str = "zstd") -> dict[str, Any]:
    """Pushes variant NAME (every platform of it built and tested here) with all its tags and
    its layers compressed with COMPRESSION; records the digest to pull in
    images/digests.json and returns that record."""
    if compression not in COMPRESSIONS:
        raise TorchenvError(f"unknown layer compression {compression!r}; use zstd (Docker 23 and later) or gzip (any client)")
    repository = f"{registry.rstrip('/')}/{settings.image_name}"
    primary = matrix.get(name)
    if len(primary.platforms) == 1:
        image_id = tested_image(primary, settings)
        names = local_tags(image_id, settings)
        digest = push_tags(image_id, [f"{repository}:{tag}" for tag in names], registry, settings, compression)
        record = {"registry": registry, "repository": repository, "digest": digest, "tags": names, "compression": compression}
        record |= {"image_id": image_id, "lock_sha256": platform_record(image_id, digest)["lock_sha256"]}
        record["platforms"] = {primary.platform: platform_record(image_id, digest)}
    else:
        record = push_index(name, matrix, settings, registry, repository, compression)
    everything = read_digests(settings)
    everything[name] = record
    settings.digests_file.parent.mkdir(parents=True, exist_ok=True)
    settings.digests_file.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")
    return record


def push_index(name: str, matrix: Matrix, settings: Settings, registry: str, repository: str, compression: str) -> dict[str, Any]:
    """A multi-platform variant: each platform's image as <variant>-<arch>, then one index
    (manifest list) under the variant's tags that lists them all."""
    builds = [matrix.get(name, platform) for platform in matrix.get(name).platforms]
    present = [build for build in builds if engine.image_id(image_tag(build, settings))]
    if not present:
        raise TorchenvError(f"no image of {name} to push on any of its platforms; build and test it first: invoke test --variant {name}")
    missing = [build.platform for build in builds if build not in present]
    if missing:
        print(f"torchenv: WARNING: {name} is not built here for {', '.join(missing)}; the index lists only the platforms built", flush=True)
    platforms_pushed = {}
    for build in present:
        image_id = tested_image(build, settings)
        digest = push_tags(image_id, [f"{repository}:{name}-{build.arch}"], registry, settings, compression)
        platforms_pushed[build.platform] = platform_record(image_id, digest)
    release = present[0].torch_release
    commit = short_commit()
    names = ([f"{release}-{name}-py{present[0].python}-{commit}"] if commit else []) + [f"{release}-{name}", name]
    sources = [f"{repository}@{entry['digest']}" for entry in platforms_pushed.values()]
    digest = make_index(repository, names, sources)
    return {
        "registry": registry,
        "repository": repository,
        "digest": digest,
        "tags": names,
        "compression": compression,
        "platforms": platforms_pushed,
    }


def make_index(repository: str, tags: list[str], sources: list[str]) -> str:
    """One index (manifest list) of the SOURCES' images under every tag; returns its digest."""
    for tag in tags:
        made = engine.docker("buildx", "imagetools", "create", "--tag", f"{repository}:{tag}", *sources, check=False)
        if made.returncode != 0:
            raise TorchenvError(
                f"making the multi-platform index {repository}:{tag} failed: {engine.last_line(made.stderr)}; "
                f"check that the registry {repository.split('/')[0]} runs, then rerun"
            )
    return str(index_manifest(f"{repository}:{tags[-1]}")["digest"])


def index_manifest(reference: str) -> dict[str, Any]:
    """The registry's index for REFERENCE: its digest and the platforms it lists."""
    return json.loads(engine.docker("buildx", "imagetools", "inspect", reference, "--format", "{{json .Manifest}}").stdout)


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
    """Pulls the variant's recorded image for its platform by digest, checks it, and tags it
    as a local build would."""
    record = read_digests(settings).get(variant.name)
    if record is None:
        raise TorchenvError(
            f"no pushed image of {variant.name} is recorded in {display_path(settings.digests_file)}; "
            f"build it: invoke build --variant {variant.name}"
        )
    pushed = record.get("platforms", {variant.platform: record})
    if variant.platform not in pushed:
        raise TorchenvError(
            f"the pushed {variant.name} has no {variant.platform} image, only {', '.join(pushed)}; "
            f"pull one of those with --platform, or build it: invoke build --variant {variant.name} --platform {variant.platform}"
        )
    repository = f"{registry.rstrip('/')}/{settings.image_name}" if registry else record["repository"]
    reference = f"{repository}@{pushed[variant.platform]['digest']}"
    existed = engine.image_id(reference) is not None
    result = engine.docker("pull", "--quiet", "--platform", variant.platform, reference, check=False)
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
    record = read_digests(settings).get(variant.name) or {}
    pushed = record.get("platforms", {variant.platform: record})
    lock = read_lock(variant, settings.lock_dir)
    if lock is None or pushed.get(variant.platform, {}).get("lock_sha256") != lock.sha256:
        return None
    try:
        return pull(variant, matrix, settings)
    except TorchenvError as error:
        print(f"torchenv: no usable prebuilt image ({error}); building instead", flush=True)
        return None
