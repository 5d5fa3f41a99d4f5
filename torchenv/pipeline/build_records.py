"""What each variant build was made from, kept per image ID beside the test records, for the
provenance `invoke push` signs. Written at every build, so an unchanged image's record is
its latest build's."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from torchenv import display_path, engine, statefiles
from torchenv.engine import BuildRequest
from torchenv.errors import TorchenvError
from torchenv.locking.locks import Lock
from torchenv.model.matrix import Variant
from torchenv.model.names import Label
from torchenv.model.provenance import BuildFacts
from torchenv.model.settings import Settings


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def builder_id(environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """The workflow that ran the build on GitHub Actions (the identity keyless signing
    certifies too), else this host."""
    workflow = environ.get("GITHUB_WORKFLOW_REF")
    if workflow:
        return f"{environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{workflow}"
    return f"urn:torchenv:host:{socket.gethostname()}"


def torchenv_version() -> str:
    try:
        return metadata.version("torchenv")
    except metadata.PackageNotFoundError:
        return "source checkout"


def record_path(image_id: str, settings: Settings) -> Path:
    return settings.work_dir / "build-records" / f"{image_id.removeprefix('sha256:')}.json"


def facts_of_build(
    variant: Variant, request: BuildRequest, lock: Lock | None, base_image: str, base_packages: str, started: str
) -> BuildFacts:
    docker = engine.get()
    buildkit, engine_version = docker.builder_versions()
    return BuildFacts(
        variant=variant.name,
        platform=variant.platform,
        matrix_entry={key: list(value) if isinstance(value, tuple) else value for key, value in asdict(variant).items()},
        source_url=request.labels.get(Label.SOURCE, ""),
        revision=request.labels.get(Label.REVISION, "unknown"),
        lock_path=display_path(lock.path) if lock else "",
        lock_sha256=lock.sha256 if lock else "",
        base_image=base_image,
        base_image_id=docker.image_id(base_image) or "",
        base_packages_sha256=hashlib.sha256(base_packages.encode()).hexdigest(),
        build_args=dict(request.build_args),
        target=request.target or "",
        buildkit=buildkit,
        engine=engine_version,
        builder_id=builder_id(),
        started=started,
        finished=now(),
        torchenv_version=torchenv_version(),
    )


def write_record(image_id: str, facts: BuildFacts, settings: Settings) -> None:
    statefiles.write_text(record_path(image_id, settings), json.dumps(facts.to_json(), indent=2, sort_keys=True) + "\n")


def read_record(image_id: str, settings: Settings) -> BuildFacts:
    """The build facts of IMAGE_ID; an image built elsewhere (or before build/ was cleaned)
    has none, and fails in one line."""
    path = record_path(image_id, settings)
    try:
        return BuildFacts.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise TorchenvError(
            f"no build record of {image_id[:19]} in {display_path(path.parent)} (it was built elsewhere, or build/ was cleaned), "
            "so there is no provenance to sign; build it here (invoke build), test it, then push"
        ) from None
    except (json.JSONDecodeError, TypeError) as error:
        raise TorchenvError(f"{display_path(path)} is not a build record ({error}); rebuild the image: invoke build") from None
