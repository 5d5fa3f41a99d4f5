"""An image's SBOM, in CycloneDX JSON, made with cyclonedx-python-lib from what torchenv
knows exactly: every Python package of the variant's lock (name, version, its sha256
hashes, the index it comes from), every Debian package of the base (name, version,
architecture), and the image's identity (variant, torch, CUDA, Python, the lock's
sha256). Deterministic: no clock, no random serial number, so the layer it is in stays
reproducible."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from torchenv.locking.layering import normalised, requirement_entries
from torchenv.locking.locks import Lock
from torchenv.model import compat
from torchenv.model.matrix import Variant

# In the image, beside the app; the label io.torchenv.sbom names it.
IMAGE_PATH = "/opt/torchenv/sbom.cdx.json"
FILE_NAME = "sbom.cdx.json"
SCHEMA = SchemaVersion.V1_6
PROPERTY_PREFIX = "torchenv:"


@dataclass(frozen=True)
class ProjectPart:
    """A project's packages on top of a variant: its name and its lock."""

    name: str
    lock_text: str
    lock_sha256: str


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def locked_components(lock_text: str, pypi_index: str, pytorch_index: str | None) -> list[Component]:
    """One component per pinned package of a lock, with every sha256 the lock accepts for it."""
    components = []
    for name, lines in requirement_entries(lock_text):
        pin = _PIN.match(lines[0])
        if pin is None:
            continue
        index = pytorch_index if pytorch_index and name in compat.PYTORCH_INDEX_PACKAGES else pypi_index
        purl = PackageURL(type="pypi", name=name, version=pin["version"])
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=name,
                version=pin["version"],
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest) for digest in sorted(set(_HASH.findall("".join(lines))))],
                external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(f"{index}/{name}/"))],
            )
        )
    return components


# What `python3 -m venv` seeds the venv with, from Debian's wheel packages: in the image
# unless the lock installs its own version over it.
# Debian 11's bundle (python-pip-whl) also seeds a "pkg-resources 0.0.0" distribution.
VENV_SEEDS = (
    ("pip", ("python3-pip-whl", "python-pip-whl"), None),
    ("setuptools", ("python3-setuptools-whl",), None),
    ("pkg-resources", ("python-pip-whl",), "0.0.0"),
)
_UPSTREAM = re.compile(r"^(?:\d+:)?([^-+~]+)")


def seeded_components(package_lines: str, locked: set[str]) -> list[Component]:
    """The venv's seeded packages that no lock replaces, at the version of the Debian wheel
    package they come from (python3-pip-whl 23.0.1+dfsg-1 seeds pip 23.0.1)."""
    debian = {line.split()[0]: line.split()[1] for line in package_lines.splitlines() if line.strip()}
    components = []
    for name, sources, fixed in VENV_SEEDS:
        source = next((package for package in sources if package in debian), None)
        upstream = _UPSTREAM.match(debian[source]) if source else None
        if name in locked or upstream is None:
            continue
        version = fixed or upstream[1]
        purl = PackageURL(type="pypi", name=name, version=version)
        properties = [Property(name=PROPERTY_PREFIX + "seeded-from", value=f"deb {source} {debian[source]}")]
        components.append(
            Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=purl.to_string(), properties=properties)
        )
    return components


def debian_components(package_lines: str, distribution: str) -> list[Component]:
    """One component per "name version architecture" line of a base's package list."""
    components = []
    for line in sorted(set(package_lines.splitlines())):
        if not line.strip():
            continue
        name, version, architecture = line.split()
        purl = PackageURL(
            type="deb", namespace="debian", name=name, version=version, qualifiers={"arch": architecture, "distro": distribution}
        )
        components.append(Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=purl.to_string()))
    return components


def image_sbom(
    variant: Variant, lock: Lock, base_packages: str, pypi_index: str, pytorch_index: str | None, project: ProjectPart | None = None
) -> str:
    """The SBOM of VARIANT's image built from LOCK on a base holding BASE_PACKAGES (with
    PROJECT's packages on top, for a project's image), as CycloneDX JSON."""
    distribution = f"debian-{variant.debian_suite}" if variant.debian_suite else variant.base
    identity = {
        "variant": variant.name,
        "platform": variant.platform,
        "torch": variant.torch,
        "torchvision": variant.torchvision,
        "torchaudio": variant.torchaudio,
        "cuda": variant.cuda,
        "python": variant.python,
        "base": variant.base,
        "lock-sha256": lock.sha256,
        **({"project": project.name, "project-lock-sha256": project.lock_sha256} if project else {}),
    }
    image = Component(
        type=ComponentType.CONTAINER,
        name=f"torchenv-{project.name}" if project else f"torchenv-{variant.name}",
        version=variant.torch,
        bom_ref=f"torchenv-image:{variant.build_name}",
        properties=[Property(name=PROPERTY_PREFIX + key, value=value) for key, value in identity.items()],
    )
    components = [*locked_components(lock.path.read_text(), pypi_index, pytorch_index), *debian_components(base_packages, distribution)]
    if project:
        components += locked_components(project.lock_text, pypi_index, None)
    components += seeded_components(base_packages, {component.name for component in components if component.purl.type == "pypi"})
    seed = f"torchenv:{variant.build_name}:{lock.sha256}:{base_packages}" + (f":{project.name}:{project.lock_sha256}" if project else "")
    bom = Bom(
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, seed),
        metadata=BomMetaData(component=image, timestamp=datetime.fromtimestamp(lock.source_date_epoch, UTC)),
        components=components,
    )
    # The image holds every component directly (the lock is flat, --no-deps).
    bom.register_dependency(image, components)
    return JsonV1Dot6(bom).output_as_string(indent=1) + "\n"


def schema_errors(text: str) -> str | None:
    """None when TEXT validates against the CycloneDX JSON schema (bundled with the library,
    no network), else the first error."""
    error = JsonStrictValidator(SCHEMA).validate_str(text)
    return None if error is None else str(error)


def packages_in(sbom: dict, purl_type: str) -> dict[str, str]:
    """name -> version of an SBOM's components of one package-URL type (pypi, deb)."""
    found = {}
    for component in sbom.get("components", []):
        purl = PackageURL.from_string(component["purl"])
        if purl.type == purl_type:
            found[normalised(purl.name) if purl_type == "pypi" else purl.name] = component["version"]
    return found
