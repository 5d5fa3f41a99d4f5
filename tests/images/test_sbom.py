"""The SBOM inside each image, checked against the image itself rather than against the
lock it was made from: the Python packages pip finds in the venv and the Debian
packages dpkg knows, at their versions; valid CycloneDX; its identity that of the labels."""

from __future__ import annotations

import json

from torchenv import engine
from torchenv.locking import sbom
from torchenv.model.names import Label

from .conftest import TrackedContainer


def test_the_sbom_in_the_image_lists_exactly_what_the_image_holds(image: str, container: TrackedContainer) -> None:
    labels = engine.get().require_image(image).labels
    assert labels[Label.SBOM] == sbom.IMAGE_PATH
    text = container.host.check_output(f"cat {sbom.IMAGE_PATH}")
    assert sbom.schema_errors(text) is None
    document = json.loads(text)
    listed = json.loads(container.host.check_output("python -m pip list --format json"))
    # pip too, and setuptools where no lock has it: python -m venv seeds them.
    installed = {entry["name"].lower().replace("_", "-"): entry["version"] for entry in listed}
    assert sbom.packages_in(document, "pypi") == installed
    dpkg = container.host.check_output("dpkg-query -W -f='${Package} ${Version}\\n'")
    assert sbom.packages_in(document, "deb") == dict(line.split() for line in dpkg.splitlines())
    identity = {entry["name"]: entry["value"] for entry in document["metadata"]["component"]["properties"]}
    assert identity["torchenv:lock-sha256"] == labels[Label.LOCK_SHA256]
    assert identity["torchenv:variant"] == labels[Label.VARIANT] and identity["torchenv:torch"] == labels[Label.TORCH]
