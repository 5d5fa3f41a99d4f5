"""The SBOM torchenv puts in each locked image: valid CycloneDX (the format's own schema),
exactly the lock's packages and the base's, the image's identity, and the same bytes
every time it is made from the same inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from torchenv import PROJECT_ROOT
from torchenv.locking import sbom
from torchenv.locking.locks import read_lock
from torchenv.model.matrix import load_matrix
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_request

BASE = (PROJECT_ROOT / "images" / "locks" / "base-bookworm.txt").read_text()
PYPI = "https://pypi.example.test/simple"


def pins(text: str) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.M)}


def made(variant_name: str = "cu117", index: str | None = None) -> tuple[dict, str]:
    variant = load_matrix().get(variant_name)
    lock = read_lock(variant)
    assert lock is not None
    text = sbom.image_sbom(variant, lock, BASE, PYPI, index)
    return json.loads(text), text


def test_the_sbom_validates_against_the_cyclonedx_schema() -> None:
    _, text = made()
    assert sbom.schema_errors(text) is None
    broken = json.loads(text)
    broken["components"][0]["type"] = "no-such-type"
    assert sbom.schema_errors(json.dumps(broken)) is not None, "the validator must be able to fail"


def test_the_sbom_lists_exactly_the_locks_packages_and_the_bases() -> None:
    document, _ = made()
    # And pip, which python -m venv seeds from Debian's python3-pip-whl (cu117's lock has its own setuptools).
    assert sbom.packages_in(document, "pypi") == pins((PROJECT_ROOT / "images" / "locks" / "cu117.txt").read_text()) | {"pip": "23.0.1"}
    assert sbom.packages_in(document, "deb") == {line.split()[0]: line.split()[1] for line in BASE.splitlines() if line.strip()}


def test_what_the_venv_seeds_is_listed_where_no_lock_replaces_it() -> None:
    """Every lock has its own setuptools (with pkg_resources, compat.BUILD_TOOL_PINS): the
    venv keeps only the pip that Debian's wheel package seeded."""
    document, _ = made("cu121")
    listed = sbom.packages_in(document, "pypi")
    locked = pins((PROJECT_ROOT / "images" / "locks" / "cu121.txt").read_text())
    assert listed["setuptools"] == locked["setuptools"] and listed["pip"] == "23.0.1"
    by_name = {component["name"]: component for component in document["components"]}
    assert by_name["pip"]["properties"] == [{"name": "torchenv:seeded-from", "value": "deb python3-pip-whl 23.0.1+dfsg-1"}]
    assert "torchenv:seeded-from" not in json.dumps(by_name["setuptools"].get("properties", []))


def test_each_python_package_carries_the_locks_hashes_and_its_index() -> None:
    document, _ = made("cu117")
    lock_text = (PROJECT_ROOT / "images" / "locks" / "cu117.txt").read_text()
    torch = next(component for component in document["components"] if component["name"] == "torch")
    block = lock_text.split("\ntorch==", 1)[1].split("\n", 1)[1].split("\n    # via", 1)[0]
    assert {entry["content"] for entry in torch["hashes"]} == set(re.findall(r"sha256:([0-9a-f]{64})", block))
    assert torch["externalReferences"] == [{"type": "distribution", "url": f"{PYPI}/torch/"}]


def test_a_pytorch_index_variant_names_that_index_for_torch_only() -> None:
    document, _ = made("cu121", index="https://download.pytorch.org/whl/cu121")
    urls = {
        component["name"]: component["externalReferences"][0]["url"]
        for component in document["components"]
        if "externalReferences" in component
    }
    assert urls["torch"].startswith("https://download.pytorch.org/whl/cu121/") and urls["numpy"].startswith(PYPI)


def test_the_image_identity_and_the_timestamp_come_from_the_matrix_and_the_lock() -> None:
    document, text = made()
    properties = {entry["name"]: entry["value"] for entry in document["metadata"]["component"]["properties"]}
    lock = read_lock(load_matrix().get("cu117"))
    assert lock is not None
    assert properties["torchenv:variant"] == "cu117" and properties["torchenv:lock-sha256"] == lock.sha256
    assert properties["torchenv:torch"] == "2.0.1" and properties["torchenv:cuda"] == "11.7" and properties["torchenv:python"] == "3.11"
    assert document["metadata"]["timestamp"].startswith("20") and made()[1] == text, "the same inputs give the same bytes"


def test_a_locked_build_carries_the_sbom_in_its_app_context_and_names_it_by_label(tmp_path: Path) -> None:
    matrix = load_matrix()
    request = build_request(matrix.get("cu117"), Settings(work_dir=tmp_path), "base", read_lock(matrix.get("cu117")), base_packages=BASE)
    written = request.contexts["requirements"] / "app" / sbom.FILE_NAME
    assert sbom.packages_in(json.loads(written.read_text()), "deb")["bash"] == "5.2.15-2+b13"
    assert request.labels[Label.SBOM] == sbom.IMAGE_PATH
