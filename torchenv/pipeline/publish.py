"""Push tested images to a registry, pull them back by digest, and refuse any image whose
labels do not match the matrix and the lock. Credentials come from `docker login` alone."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from torchenv import display_path, engine, statefiles
from torchenv.errors import TorchenvError
from torchenv.locking.locks import read_lock
from torchenv.model import names, provenance
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.names import Label
from torchenv.model.records import PlatformPush, PushRecord
from torchenv.model.settings import Settings
from torchenv.model.trust import Trust
from torchenv.pipeline import attest, git, image_trust, zstd_push
from torchenv.pipeline.build import image_tag
from torchenv.pipeline.image_trust import Verified
from torchenv.pipeline.published import repository_of
from torchenv.pipeline.tagging import published_tags, tags_for
from torchenv.pipeline.testrecords import passed_record

COMPRESSIONS = ("zstd", "gzip")


def require_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise TorchenvError(f"unknown layer compression {compression!r}; use --compression zstd (Docker 23 and later) or gzip (any client)")


def read_digests(settings: Settings) -> dict[str, PushRecord]:
    path = settings.digests_file
    if not path.exists():
        return {}
    try:
        return {name: PushRecord.from_json(data) for name, data in json.loads(path.read_text()).items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        where = f" (line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise TorchenvError(f"{display_path(path)} is not a valid digests file{where}; restore it from git") from None


def write_digest(name: str, record: PushRecord, settings: Settings) -> None:
    # Two pushes at once each keep the other's record.
    with statefiles.exclusive(settings.digests_file):
        everything = {key: value.to_json() for key, value in read_digests(settings).items()}
        everything[name] = record.to_json()
        statefiles.write_text(settings.digests_file, json.dumps(everything, indent=2, sort_keys=True) + "\n")


def tested_image(variant: Variant, settings: Settings) -> str:
    """The ID of the variant's local image, every recorded test of which passed."""
    tag = image_tag(variant, settings)
    image_id = engine.get().image_id(tag)
    if image_id is None:
        raise TorchenvError(f"no image {tag} to push; build and test it first: invoke test --variant {variant.name}")
    if passed_record(image_id, settings) is None:
        raise TorchenvError(
            f"{tag} ({image_id[:19]}) has no passing test record; run `invoke test --variant {variant.name}` first, then push"
        )
    lock = read_lock(variant, settings.lock_dir)
    if lock is not None and git.is_committed(lock.path) is False:
        # `invoke pull` elsewhere checks a pushed image against the committed lock.
        raise TorchenvError(
            f"{display_path(lock.path)} is not committed (a build wrote it); commit it, so that a pull elsewhere "
            f"can check {tag} against it, then push"
        )
    return image_id


def push_tags(
    image_id: str,
    aliases: list[str],
    registry: str,
    settings: Settings,
    compression: str = "zstd",
    after_first: Callable[[str], None] | None = None,
) -> str:
    """Pushes IMAGE_ID under every alias; returns the manifest digest. With gzip the engine
    pushes, through aliases that are local only for the push and removed again, whatever
    happens; with zstd, skopeo pushes (torchenv/pipeline/zstd_push.py) and no local tag is made.
    AFTER_FIRST (the signing) runs with the digest after the first, most specific, alias is
    pushed: the moving tags (cu117, latest) move only to an image it accepted."""
    require_compression(compression)
    if compression == "zstd":
        return zstd_push.push(image_id, aliases, registry, settings.work_dir, settings.zstd_level, after_first)
    docker = engine.get()
    pushed: list[str] = []
    digest = ""
    try:
        for alias in aliases:
            docker.tag(image_id, alias)
        for alias in aliases:
            try:
                digest = docker.push(alias)
            except TorchenvError as error:
                done = f" ({len(pushed)} of {len(aliases)} tags were pushed before)" if pushed else ""
                raise TorchenvError(
                    f"{error}{done}; check that the registry {registry} runs and that `docker login {registry}` succeeded, then rerun"
                ) from None
            pushed.append(alias)
            if after_first and len(pushed) == 1:
                after_first(digest)
        return digest
    finally:
        for alias in aliases:
            with contextlib.suppress(TorchenvError):  # the push's own error is the one to see
                docker.remove_image(alias)


def platform_push(image_id: str, digest: str) -> PlatformPush:
    labels = engine.get().require_image(image_id).labels
    return PlatformPush(digest, image_id, labels.get(Label.LOCK_SHA256, ""), labels.get(Label.REVISION, ""))


def signing_step(repository: str, image_id: str, settings: Settings) -> Callable[[str], None] | None:
    """What signs one pushed image (with its provenance and SBOM), gathered now, before any
    byte is pushed; None, with a warning, when no signer is configured."""
    signer = settings.signer()
    if signer is None:
        print(
            f"torchenv: WARNING: pushing {image_id[:19]} unsigned (no TORCHENV_SIGN_KEY, no TORCHENV_SIGN_KEYLESS); "
            "a pull that checks signatures will refuse it (docs/supply-chain.md)",
            flush=True,
        )
        return None
    attest.require_signer(signer)
    evidence = attest.gather(image_id, settings)

    def sign(digest: str) -> None:
        try:
            attest.sign_and_attest(f"{repository}@{digest}", signer, evidence)
        except TorchenvError as error:
            raise TorchenvError(
                f"{error}; the image is in the registry unsigned under its most specific tag only (its other tags were not "
                "pushed, and a pull that checks signatures refuses it): fix that, then push again"
            ) from None

    return sign


def push(name: str, matrix: Matrix, settings: Settings, registry: str, compression: str = "zstd") -> PushRecord:
    """Pushes variant NAME (every platform of it built and tested here) with all its tags and
    its layers compressed with COMPRESSION, signed and attested when a signer is configured;
    records the digest to pull in images/digests.json and returns that record. A
    one-platform variant is pushed as its image under the variant's tags; a multi-platform
    one as each platform's image under <variant>-<arch>, then an index (manifest list)
    listing them under the same tags."""
    require_compression(compression)
    repository = f"{registry.rstrip('/')}/{settings.image_name}"
    primary = matrix.get(name)
    signer = settings.signer()
    if len(primary.platforms) == 1:
        image_id = tested_image(primary, settings)
        tags = published_tags(image_id, primary, matrix)
        sign = signing_step(repository, image_id, settings)
        digest = push_tags(image_id, [f"{repository}:{tag}" for tag in tags], registry, settings, compression, sign)
        pushed = {primary.platform: platform_push(image_id, digest)}
    else:
        tags, pushed = push_platforms(name, matrix, settings, registry, repository, compression)
        sign_index = (lambda digest: attest.sign(f"{repository}@{digest}", signer)) if signer else None
        digest = make_index(repository, tags, [f"{repository}@{entry.digest}" for entry in pushed.values()], sign_index)
    record = PushRecord(registry, repository, digest, tuple(tags), compression, pushed, signed=signer is not None)
    write_digest(name, record, settings)
    return record


def push_platforms(
    name: str, matrix: Matrix, settings: Settings, registry: str, repository: str, compression: str
) -> tuple[list[str], dict[str, PlatformPush]]:
    """Each built platform's image as <variant>-<arch>; returns the index's tags and the pushes."""
    builds = [matrix.get(name, platform) for platform in matrix.get(name).platforms]
    present = [build for build in builds if engine.get().image_id(image_tag(build, settings))]
    if not present:
        raise TorchenvError(f"no image of {name} to push on any of its platforms; build and test it first: invoke test --variant {name}")
    missing = [build.platform for build in builds if build not in present]
    if missing:
        print(f"torchenv: WARNING: {name} is not built here for {', '.join(missing)}; the index lists only the platforms built", flush=True)
    images = {build.platform: tested_image(build, settings) for build in present}
    signing = {platform: signing_step(repository, image_id, settings) for platform, image_id in images.items()}
    pushed = {}
    for build in present:
        image_id = images[build.platform]
        alias = f"{repository}:{names.platform_tag(name, build.arch)}"
        digest = push_tags(image_id, [alias], registry, settings, compression, signing[build.platform])
        pushed[build.platform] = platform_push(image_id, digest)
    return published_tags(images[present[0].platform], present[0], matrix), pushed


def make_index(repository: str, tags: list[str], sources: list[str], after_first: Callable[[str], None] | None = None) -> str:
    """One index (manifest list) of the SOURCES' images under every tag; returns its digest.
    AFTER_FIRST (the signing) runs with the digest once the first tag is made."""
    digest = ""
    for number, tag in enumerate(tags):
        try:
            engine.get().imagetools_create(f"{repository}:{tag}", sources)
        except TorchenvError as error:
            raise TorchenvError(f"{error}; check that the registry {repository.split('/')[0]} runs, then rerun") from None
        if number == 0:
            digest = str(index_manifest(f"{repository}:{tag}")["digest"])
            if after_first:
                after_first(digest)
    return digest


def index_manifest(reference: str) -> dict[str, object]:
    """The registry's index (or manifest) for REFERENCE: its digest and the platforms it lists."""
    return engine.get().imagetools_manifest(reference)


def expected_lock_sha256(variant: Variant, settings: Settings) -> str:
    lock = read_lock(variant, settings.lock_dir)
    return lock.sha256 if lock else ""


def expected_labels(variant: Variant, settings: Settings) -> dict[str, str]:
    lock = read_lock(variant, settings.lock_dir)
    return names.identity_labels(variant, lock.sha256 if lock else None)


def pull(variant: Variant, matrix: Matrix, settings: Settings, registry: str | None = None) -> str:
    """Pulls the variant's recorded image for its platform by digest, checks it, and tags it
    as a local build would."""
    record = read_digests(settings).get(variant.name)
    if record is None:
        raise TorchenvError(
            f"no pushed image of {variant.name} is recorded in {display_path(settings.digests_file)}; "
            f"build it: invoke build --variant {variant.name}"
        )
    if variant.platform not in record.platforms:
        raise TorchenvError(
            f"the pushed {variant.name} has no {variant.platform} image, only {', '.join(record.platforms)}; "
            f"pull one of those with --platform, or build it: invoke build --variant {variant.name} --platform {variant.platform}"
        )
    repository = f"{registry.rstrip('/')}/{settings.image_name}" if registry else record.repository
    pushed = record.platforms[variant.platform]
    reference = f"{repository}@{pushed.digest}"
    trust = settings.trust()
    if trust is not None:
        expected = provenance.Expected(
            variant.name, variant.platform, expected_lock_sha256(variant, settings), pushed.revision.removesuffix("-dirty")
        )
        try:
            image_trust.check(reference, trust, expected)
        except image_trust.Untrusted as refusal:
            raise TorchenvError(
                f"refusing {reference}: {refusal}; nothing was pulled or tagged; pull an image that `invoke push` signed with "
                f"the key you trust, or build it: invoke build --variant {variant.name}"
            ) from None
    docker = engine.get()
    existed = docker.image_id(reference) is not None
    try:
        image_id = docker.pull(reference, variant.platform)
    except TorchenvError as error:
        raise TorchenvError(f"{error}; check the registry and `docker login`, or build it: invoke build --variant {variant.name}") from None
    problems = names.label_mismatches(docker.require_image(image_id).labels, expected_labels(variant, settings))
    if problems:
        if not existed:
            docker.remove_image(reference)
        raise TorchenvError(f"refusing {reference}: {'; '.join(problems)}; build it instead: invoke build --variant {variant.name}")
    for tag in tags_for(image_id, variant, matrix):
        docker.tag(image_id, f"{settings.image_name}:{tag}")
    return reference


def pull_first(variant: Variant, matrix: Matrix, settings: Settings) -> str | None:
    """The pulled reference when a prebuilt image with the current lock exists, else None."""
    record = read_digests(settings).get(variant.name)
    lock = read_lock(variant, settings.lock_dir)
    pushed = record.platforms.get(variant.platform) if record else None
    if lock is None or pushed is None or pushed.lock_sha256 != lock.sha256:
        return None
    try:
        return pull(variant, matrix, settings)
    except TorchenvError as error:
        print(f"torchenv: no usable prebuilt image ({error}); building instead", flush=True)
        return None


def verify_reference(reference: str, matrix: Matrix, settings: Settings, trust: Trust, platform: str, variant: str = "") -> Verified:
    """`invoke verify-image`: REFERENCE (a tag or a digest; an index is checked, then its
    PLATFORM image) signed by TRUST, its provenance naming VARIANT if given and, when the
    variant it names is in the matrix, that variant's committed lock."""
    repository = repository_of(reference)
    manifest = index_manifest(reference)
    reference = f"{repository}@{manifest['digest']}"
    entries = manifest.get("manifests") or []
    if entries:
        image_trust.check_signature(reference, trust)
        chosen = [entry for entry in entries if f"{entry['platform']['os']}/{entry['platform']['architecture']}" == platform]
        if not chosen:
            listed = ", ".join(f"{entry['platform']['os']}/{entry['platform']['architecture']}" for entry in entries)
            raise TorchenvError(f"{reference} lists no {platform} image, only {listed}; choose one with --platform")
        reference = f"{repository}@{chosen[0]['digest']}"
    verified = image_trust.check(reference, trust, provenance.Expected(variant=variant, platform=platform if entries else ""))
    named = verified.claims
    if named.variant in matrix.variants and named.platform in matrix.get(named.variant).platforms:
        wanted = expected_lock_sha256(matrix.get(named.variant, named.platform), settings)
        if wanted and wanted != named.lock_sha256:
            raise image_trust.Untrusted(
                f"its provenance names lock sha256 {named.lock_sha256!r}, but this checkout's {named.variant} lock is {wanted!r}"
            )
    return verified


def pushed_reference(variant: Variant, settings: Settings) -> str:
    """The image a cluster's job names unless told (`invoke slurm --script`, `invoke
    manifests`): the variant's pushed digest recorded in images/digests.json."""
    record = read_digests(settings).get(variant.name)
    pushed = record.platforms.get(variant.platform) if record else None
    if record is None or pushed is None:
        raise TorchenvError(
            f"no pushed {variant.name} is recorded in {settings.digests_file.name}; say which image the cluster pulls: "
            f"--image REGISTRY/{settings.image_name}:{variant.name} (pushed with invoke push --registry REGISTRY)"
        )
    return f"{record.repository}@{pushed.digest}"
