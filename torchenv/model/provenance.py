"""What a build was made from, as an in-toto statement's SLSA provenance (v1) predicate, and
the claims `invoke pull` and `invoke verify-image` read back out of one. Pure data: the
build records the facts (pipeline/build_records.py), the push signs them (pipeline/attest.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torchenv.errors import TorchenvError

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# cosign's --type names for the two attestations a push attaches to each digest.
PROVENANCE_ATTESTATION = "slsaprovenance1"
SBOM_ATTESTATION = "cyclonedx"
# What buildDefinition.externalParameters means: this project's build of one matrix entry.
BUILD_TYPE = "https://github.com/torchenv/torchenv/blob/main/docs/supply-chain.md#build-type-v1"


@dataclass(frozen=True)
class BuildFacts:
    """Everything one variant build was made from, recorded when it was built."""

    variant: str
    platform: str
    # The matrix entry as images/matrix.toml resolved it.
    matrix_entry: dict[str, Any]
    source_url: str
    # The commit built; "<commit>-dirty" when tracked files differed from it.
    revision: str
    lock_path: str
    lock_sha256: str
    base_image: str
    base_image_id: str
    # sha256 of the base's Debian package list ("name version architecture" lines).
    base_packages_sha256: str
    build_args: dict[str, str]
    target: str
    buildkit: str
    engine: str
    builder_id: str
    started: str
    finished: str
    torchenv_version: str = ""

    @property
    def commit(self) -> str:
        return self.revision.removesuffix("-dirty")

    @property
    def dirty(self) -> bool:
        return self.revision.endswith("-dirty")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildFacts:
        return cls(**data)


def predicate(facts: BuildFacts) -> dict[str, Any]:
    """The SLSA provenance v1 predicate of FACTS (https://slsa.dev/spec/v1.0/provenance)."""
    source = {"uri": f"git+{facts.source_url}", "digest": {"gitCommit": facts.commit}}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "variant": facts.variant,
                "platform": facts.platform,
                "matrixEntry": facts.matrix_entry,
                "source": {**source, "dirty": facts.dirty},
                "lock": {"path": facts.lock_path, "sha256": facts.lock_sha256},
            },
            "internalParameters": {
                "buildArgs": facts.build_args,
                "target": facts.target,
                "buildkit": facts.buildkit,
                "engine": facts.engine,
            },
            "resolvedDependencies": [
                source,
                {"name": "lock", "uri": facts.lock_path, "digest": {"sha256": facts.lock_sha256}},
                {"name": "base", "uri": facts.base_image, "digest": {"sha256": facts.base_image_id.removeprefix("sha256:")}},
                {"name": "base-packages", "uri": "dpkg-query of the base", "digest": {"sha256": facts.base_packages_sha256}},
            ],
        },
        "runDetails": {
            "builder": {"id": facts.builder_id, "version": {"torchenv": facts.torchenv_version, "buildkit": facts.buildkit}},
            "metadata": {"startedOn": facts.started, "finishedOn": facts.finished},
        },
    }


@dataclass(frozen=True)
class Claims:
    """What a provenance says, for the checks of a pull and for people to read."""

    variant: str
    platform: str
    lock_sha256: str
    commit: str
    dirty: bool
    source: str
    builder: str
    buildkit: str
    base_packages_sha256: str

    def lines(self) -> list[str]:
        state = " (uncommitted changes)" if self.dirty else ""
        return [
            f"variant    {self.variant} ({self.platform})",
            f"source     {self.source} at {self.commit}{state}",
            f"lock       sha256:{self.lock_sha256}",
            f"base       Debian packages sha256:{self.base_packages_sha256}",
            f"builder    {self.builder} (BuildKit {self.buildkit})",
        ]


def claims_of(document: dict[str, Any]) -> Claims:
    """The claims of a provenance PREDICATE; a malformed one fails in one line."""
    try:
        definition = document["buildDefinition"]
        external = definition["externalParameters"]
        packages = next(entry for entry in definition["resolvedDependencies"] if entry.get("name") == "base-packages")
        return Claims(
            variant=str(external["variant"]),
            platform=str(external["platform"]),
            lock_sha256=str(external["lock"]["sha256"]),
            commit=str(external["source"]["digest"]["gitCommit"]),
            dirty=bool(external["source"].get("dirty", False)),
            source=str(external["source"]["uri"]).removeprefix("git+"),
            builder=str(document["runDetails"]["builder"]["id"]),
            buildkit=str(definition["internalParameters"].get("buildkit", "")),
            base_packages_sha256=str(packages["digest"]["sha256"]),
        )
    except (KeyError, TypeError, StopIteration) as error:
        raise TorchenvError(f"the provenance is not one torchenv wrote (no {error} in it)") from None


@dataclass(frozen=True)
class Expected:
    """What a pull expects a provenance to say; an empty field is not checked."""

    variant: str = ""
    platform: str = ""
    lock_sha256: str = ""
    commit: str = ""


def mismatches(claims: Claims, expected: Expected) -> list[str]:
    found = {"variant": claims.variant, "platform": claims.platform, "lock sha256": claims.lock_sha256, "commit": claims.commit}
    wanted = {"variant": expected.variant, "platform": expected.platform, "lock sha256": expected.lock_sha256, "commit": expected.commit}
    return [
        f"its provenance names {what} {found[what]!r}, expected {value!r}"
        for what, value in wanted.items()
        if value and not _same(what, found[what], value)
    ]


def _same(what: str, found: str, wanted: str) -> bool:
    # A record may hold a short commit; a provenance always holds the full one.
    if what == "commit":
        return bool(found) and (found.startswith(wanted) or wanted.startswith(found))
    return found == wanted
