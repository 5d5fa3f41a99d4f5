"""The controllers' part in the Kubernetes emulation: from a manifest's own objects, the
pods each controller would create, with the names, host names and variables it gives
them, as its source does (the kubelet's part is pods.py). The unit tier hands these
pods' environments to train's launcher; tests/clusters runs them as containers.

- Indexed Job: kubernetes/kubernetes pkg/controller/job (job_controller.go sets the host
  name `<job>-<index>` when the template names none; indexed_job_utils.go adds the
  annotation batch.kubernetes.io/job-completion-index and JOB_COMPLETION_INDEX as a
  fieldRef to it). The pods' labels include job-name, which the Service selects.
- PyTorchJob: kubeflow/training-operator v1.8.1 (0f8735f), pkg/controller.v1/pytorch:
  pods and their headless Services are `<job>-<replica type>-<index>`; envvar.go and
  master.go append PYTHONUNBUFFERED=1, MASTER_PORT and PET_MASTER_PORT (the port named
  pytorchjob-port of the Master's container `pytorch`), MASTER_ADDR and PET_MASTER_ADDR
  (`<job>-master-0`), WORLD_SIZE (pods x nprocPerNode, 1 when unset), RANK and
  PET_NODE_RANK (a worker's is its index + 1) and, without an elasticPolicy, PET_NNODES.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .pods import Pod

JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def of_kind(documents: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    (found,) = [document for document in documents if document["kind"] == kind]
    return found


def indexed_job_pods(documents: Sequence[Mapping[str, Any]]) -> list[Pod]:
    job = of_kind(documents, "Job")
    name, spec = job["metadata"]["name"], job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    pods = []
    for index in range(spec["completions"]):
        template = copy.deepcopy(spec["template"])
        for container in template["spec"]["containers"]:
            fieldref = {"fieldRef": {"fieldPath": f"metadata.annotations['{JOB_COMPLETION_INDEX}']"}}
            container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "valueFrom": fieldref})
        pods.append(
            Pod(
                name=f"{name}-{index}",
                template=template,
                hostname=template["spec"].get("hostname") or f"{name}-{index}",
                subdomain=template["spec"].get("subdomain"),
                annotations={JOB_COMPLETION_INDEX: str(index)},
                labels={**template["metadata"].get("labels", {}), "job-name": name},
            )
        )
    return pods


PYTORCHJOB_CONTAINER, PYTORCHJOB_PORT_NAME = "pytorch", "pytorchjob-port"


def pytorchjob_pods(documents: Sequence[Mapping[str, Any]]) -> list[Pod]:
    job = of_kind(documents, "PyTorchJob")
    name, spec = job["metadata"]["name"], job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    master = replicas["Master"]["template"]["spec"]["containers"]
    (main,) = [container for container in master if container["name"] == PYTORCHJOB_CONTAINER]
    port = next(port["containerPort"] for port in main["ports"] if port["name"] == PYTORCHJOB_PORT_NAME)
    total = sum(replica["replicas"] for replica in replicas.values())
    nproc = spec.get("nprocPerNode")
    world_size = total * (int(nproc) if nproc and nproc.isdigit() else 1)
    assert "elasticPolicy" not in spec, "the emulation plays a PyTorchJob without an elasticPolicy"
    pods = []
    for kind, replica in replicas.items():
        for index in range(replica["replicas"]):
            rank = index + 1 if kind == "Worker" else index
            pod_name = f"{name}-{kind.lower()}-{index}"
            env = {
                "PYTHONUNBUFFERED": "1",
                "MASTER_PORT": str(port),
                "PET_MASTER_PORT": str(port),
                "MASTER_ADDR": f"{name}-master-0",
                "PET_MASTER_ADDR": f"{name}-master-0",
                "WORLD_SIZE": str(world_size),
                "RANK": str(rank),
                "PET_NODE_RANK": str(rank),
                **({"PET_NPROC_PER_NODE": nproc} if nproc else {}),
                "PET_NNODES": str(total),
            }
            template = replica["template"]
            pods.append(Pod(pod_name, template, hostname=pod_name, container=PYTORCHJOB_CONTAINER, env=env, services=[pod_name]))
    return pods
