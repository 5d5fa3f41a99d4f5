"""Every object `invoke manifests` writes, checked offline against the schema the cluster
would check it with, before anything is written: the built-in kinds against the
Kubernetes API's own (kubernetes-validate's bundled copies, strict: an unknown field
fails), the custom resources against their CRDs' schemas kept in kubernetes/crds (their
sources and licence in SOURCES.md there), made strict the same way."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import kubernetes_validate

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError

CRDS = PROJECT_ROOT / "kubernetes" / "crds"
# The oldest release the manifests are for (Indexed Jobs' pod host names, backoffLimit per
# index and Job success policies are older) and the newest kubernetes-validate bundles.
KUBERNETES_RELEASES = ("1.29", "1.37")
# (apiVersion, kind) -> the CRD schema's file, and what it came from (SOURCES.md).
CUSTOM_RESOURCES = {
    ("kubeflow.org/v1", "PyTorchJob"): ("PyTorchJob.json", "kubeflow/training-operator v1.8.1"),
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): ("TrainJob.json", "kubeflow/trainer v2.3.0"),
    ("ray.io/v1", "RayJob"): ("RayJob.json", "ray-project/kuberay v1.6.2"),
}
# Keywords whose keys are names, not keywords (a property may be named "properties").
NAME_MAPS = frozenset({"properties", "patternProperties"})


def strict(schema: Any, names: bool = False) -> Any:
    """SCHEMA with additionalProperties: false on every object that lists its properties
    and says nothing of others: a misspelt field fails, as with kubectl's strict field
    validation, where the schema alone would let it through."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    found = {key: strict(value, key in NAME_MAPS and not names) for key, value in schema.items()}
    open_ = "additionalProperties" in found or found.get("x-kubernetes-preserve-unknown-fields")
    if not names and "properties" in found and not open_:
        found["additionalProperties"] = False
    return found


@functools.cache
def crd_validator(file: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads((CRDS / file).read_text()))
    return jsonschema.Draft202012Validator(schema)


def problems(document: Mapping[str, Any]) -> list[str]:
    """What is wrong with one object, "PATH: MESSAGE" each; empty when its schema takes it."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in CUSTOM_RESOURCES:
        file, source = CUSTOM_RESOURCES[key]
        errors = sorted(crd_validator(file).iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))
        return [f"{error.json_path}: {brief(error.message)} (the CRD of {source})" for error in errors]
    found = []
    for release in KUBERNETES_RELEASES:
        try:
            kubernetes_validate.validate(dict(document), release, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            found.append(f"$.{path}: {brief(error.message)} (Kubernetes {release})")
        except kubernetes_validate.utils.SchemaNotFoundError:
            found.append(f"no schema for {key[1]} {key[0]} in Kubernetes {release}")
    return found


def brief(message: str) -> str:
    return message if len(message) <= 200 else f"{message[:120]} ... {message[-60:]}"


def check(documents: Iterable[Mapping[str, Any]]) -> None:
    """Fails in one line at the first object its schema refuses."""
    for document in documents:
        found = problems(document)
        if found:
            name = document.get("metadata", {}).get("name", "?")
            raise TorchenvError(
                f"the {document.get('kind')} {name} does not fit its schema: {found[0]}; nothing was written "
                "(if the options given are valid, this is torchenv's bug: please report it with the command)"
            )
