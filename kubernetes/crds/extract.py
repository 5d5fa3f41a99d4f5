"""Regenerates the schemas here from clones of the three repositories (needs PyYAML):

    python kubernetes/crds/extract.py CLONES

where CLONES holds kubeflow/trainer, kubeflow/training-operator and ray-project/kuberay
cloned as trainer/, training-operator/ and kuberay/, with their tags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
# (kind, clone, tag, path of the CRD in it)
CRDS = [
    ("TrainJob", "trainer", "v2.3.0", "manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml"),
    ("PyTorchJob", "training-operator", "v1.8.1", "manifests/base/crds/kubeflow.org_pytorchjobs.yaml"),
    ("RayJob", "kuberay", "v1.6.2", "ray-operator/config/crd/bases/ray.io_rayjobs.yaml"),
]
# Keywords whose keys are names, not keywords: a property named "description" stays.
NAME_MAPS = {"properties", "patternProperties", "definitions", "$defs"}


def without_descriptions(node: Any, names: bool = False) -> Any:
    if isinstance(node, dict):
        return {
            key: without_descriptions(value, key in NAME_MAPS and not names) for key, value in node.items() if names or key != "description"
        }
    if isinstance(node, list):
        return [without_descriptions(value) for value in node]
    return node


def main(clones: Path) -> None:
    for kind, clone, tag, path in CRDS:
        text = subprocess.run(
            ["git", "-C", str(clones / clone), "show", f"{tag}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        crd = yaml.safe_load(text)
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
        (version,) = [version for version in crd["spec"]["versions"] if version.get("storage")]
        schema = without_descriptions(version["schema"]["openAPIV3Schema"])
        (HERE / f"{kind}.json").write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
