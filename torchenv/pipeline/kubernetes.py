"""Kubernetes manifests for a variant's image on N nodes (`invoke manifests`): an Indexed
Job with its headless Service, a Kubeflow PyTorchJob, or a Kubeflow Trainer v2 TrainJob.
Each pod runs `train`, which
reads its place from what the controller injects (docker/app/torchenv_app/cluster.py);
the manifests set nothing torchrun or the controller sets itself.

The pods run as the image's non-root user on a read-only root filesystem, with writable
mounts where torch writes: /dev/shm (a memory emptyDir: DataLoader workers, gloo, NCCL),
/tmp (torch.compile's code and caches) and /out (metrics and checkpoints)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchenv.errors import TorchenvError
from torchenv.model.matrix import Variant
from torchenv.pipeline import kubernetes_schemas

KINDS = ("indexed-job", "pytorchjob", "trainjob")
# The image's user (docker/base/adapt.sh) and where train writes (the image's TORCHENV_OUT).
USER_ID = 1000
OUT = "/out"
# torchrun's c10d port on pod 0 (cluster.DEFAULT_PORT), and the PyTorchJob controller's
# port name and default (training-operator's PytorchJobDefaultPortName / DefaultPort).
RENDEZVOUS_PORT = 29500
PYTORCHJOB_PORT_NAME, PYTORCHJOB_PORT = "pytorchjob-port", 23456
# Kubeflow Trainer v2.3's runtime for torchrun (manifests/base/runtimes/torch_distributed.yaml):
# one replicated Job and one container, both named "node"; a patch names its manager by a
# domain-prefixed path (the JobSet plugin's webhook).
TRAINER_RUNTIME, TRAINER_NODE, TRAINER_PATCH_MANAGER = "torch-distributed", "node", "torchenv.dev/manifests"
# A DNS-1035 label: a Service's name, and with "-<index>" each pod's host name (63 at most).
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# A resource quantity (k8s.io/apimachinery resource.Quantity, the CRDs' pattern): the
# built-in schemas take any string there, the API server does not.
QUANTITY = re.compile(r"(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?")


@dataclass(frozen=True)
class JobSpec:
    kind: str
    name: str
    image: str
    nodes: int
    gpus_per_node: int = 1
    shm_size: str = "8Gi"
    # A PersistentVolumeClaim (ReadWriteMany) for /out: a restarted pod resumes from the
    # checkpoint there. Without one, /out is each pod's own emptyDir.
    out_claim: str | None = None
    max_restarts: int = 3


def validate(spec: JobSpec) -> None:
    if spec.kind not in KINDS:
        raise TorchenvError(f"no manifest kind '{spec.kind}'; choose one of {', '.join(KINDS)}")
    longest = len(longest_pod_name(spec))
    if not NAME.fullmatch(spec.name) or longest > 63:
        raise TorchenvError(
            f"--name {spec.name!r}: a job's name must be lower-case letters, digits and '-', start with a letter and leave "
            f"its pods' host names (like {spec.name}-0) 63 characters at most; try --name torchenv-train"
        )
    if not QUANTITY.fullmatch(spec.shm_size):
        raise TorchenvError(f"--shm-size {spec.shm_size!r} is not a Kubernetes quantity; write it like 8Gi or 512Mi")
    if spec.nodes < 1 or spec.gpus_per_node < 1:
        raise TorchenvError(f"--nodes {spec.nodes} --gpus-per-node {spec.gpus_per_node}: a job needs a node and a GPU on each at least")


def longest_pod_name(spec: JobSpec) -> str:
    """The longest host name a job's pods get (a DNS label: 63 characters at most)."""
    if spec.kind == "pytorchjob":
        return f"{spec.name}-worker-{spec.nodes - 2}" if spec.nodes > 1 else f"{spec.name}-master-0"
    if spec.kind == "trainjob":
        # JobSet's pods: <jobset>-<replicated job>-<job index>-<pod index>, and its webhook
        # keeps room for the 5 characters the Job controller appends to a pod's name.
        return f"{spec.name}-{TRAINER_NODE}-0-{spec.nodes - 1}-xxxxx"
    return f"{spec.name}-{spec.nodes - 1}"


def container(variant: Variant, spec: JobSpec, name: str, port: dict[str, Any], env: list[dict[str, str]]) -> dict[str, Any]:
    # One torchrun per pod, a process per GPU asked for (none of these engines says how
    # many a pod has); the Job or the controller replaces a lost pod, and torchrun's
    # restarts resume the others from /out's checkpoint.
    command = ["train", "--out", OUT, "--max-restarts", str(spec.max_restarts)]
    command += ["--nproc", str(spec.gpus_per_node)] if variant.is_cuda else []
    limits = {"nvidia.com/gpu": spec.gpus_per_node} if variant.is_cuda else {}
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env,
        **({"ports": [port]} if port else {}),
        **({"resources": {"limits": limits}} if limits else {}),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "out", "mountPath": OUT},
        ],
    }


def pod_spec(variant: Variant, spec: JobSpec, main: dict[str, Any]) -> dict[str, Any]:
    out = {"persistentVolumeClaim": {"claimName": spec.out_claim}} if spec.out_claim else {"emptyDir": {}}
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [main],
        "volumes": [
            # The container runtime's /dev/shm is 64 MB; a memory emptyDir counts toward the pod's memory.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "out", **out},
        ],
    }


def labels(spec: JobSpec, variant: Variant) -> dict[str, str]:
    return {"app.kubernetes.io/name": "torchenv", "app.kubernetes.io/instance": spec.name, "torchenv/variant": variant.name}


def object_metadata(spec: JobSpec, variant: Variant) -> dict[str, Any]:
    """The name and labels of every object a job's manifests hold."""
    return {"name": spec.name, "labels": labels(spec, variant)}


def indexed_job(variant: Variant, spec: JobSpec) -> list[dict[str, Any]]:
    """The headless Service that names each pod (<job>-<index>.<job>), published before the
    pods are ready so that pod 0's name resolves while the others wait for it, and the
    Indexed Job: one pod per node, its index the node rank."""
    port = {"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}
    # A pod is not told the Job's size: train reads it from TORCHENV_NNODES.
    main = container(variant, spec, "train", port, [{"name": "TORCHENV_NNODES", "value": str(spec.nodes)}])
    pods = pod_spec(variant, spec, main)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(spec, variant),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"job-name": spec.name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_metadata(spec, variant),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.nodes,
            "parallelism": spec.nodes,
            # A lost pod is replaced under its own index and host name, and rejoins.
            "backoffLimit": spec.max_restarts,
            "template": {
                "metadata": {"labels": labels(spec, variant)},
                "spec": {"subdomain": spec.name, "restartPolicy": "Never", **pods},
            },
        },
    }
    return [service, job]


def pytorchjob(variant: Variant, spec: JobSpec) -> list[dict[str, Any]]:
    """Kubeflow's PyTorchJob (training-operator, kubeflow.org/v1): a Master and NODES - 1
    Workers; the controller sets MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE in each."""
    port = {"name": PYTORCHJOB_PORT_NAME, "containerPort": PYTORCHJOB_PORT}
    # The controller finds its container by this name.
    template = {
        "metadata": {"labels": labels(spec, variant)},
        "spec": pod_spec(variant, spec, container(variant, spec, "pytorch", port, [])),
    }
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if spec.nodes > 1:
        replicas["Worker"] = {"replicas": spec.nodes - 1, "restartPolicy": "OnFailure", "template": template}
    return [
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": object_metadata(spec, variant),
            "spec": {"runPolicy": {"backoffLimit": spec.max_restarts}, "pytorchReplicaSpecs": replicas},
        }
    ]


def trainjob(variant: Variant, spec: JobSpec) -> list[dict[str, Any]]:
    """Kubeflow Trainer v2's TrainJob (trainer.kubeflow.org/v1alpha1, Trainer v2.3) on the
    torch-distributed runtime: the trainer's image, command and node count, and a runtime
    patch for what the pod needs beyond them (user, read-only root, mounts). The torch
    plugin sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR
    (<job>-node-0-0.<job>) and PET_MASTER_PORT (29500), reserved names a TrainJob may not
    set, and torchrun takes them as its options' defaults."""
    main = container(variant, spec, TRAINER_NODE, {}, [])
    pods = pod_spec(variant, spec, main)
    trainer: dict[str, Any] = {
        "image": main["image"],
        "command": main["command"],
        "numNodes": spec.nodes,
        # Unset, a CPU pod would get a process per CPU it requests; train decides one per GPU.
        "numProcPerNode": spec.gpus_per_node if variant.is_cuda else 1,
        **({"resourcesPerNode": main["resources"]} if "resources" in main else {}),
    }
    node = {"name": TRAINER_NODE, "securityContext": main["securityContext"], "volumeMounts": main["volumeMounts"]}
    pod = {"securityContext": pods["securityContext"], "volumes": pods["volumes"], "containers": [node]}
    patch = {
        "manager": TRAINER_PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": TRAINER_NODE,
                            "template": {
                                "spec": {
                                    "template": {
                                        "metadata": {"labels": labels(spec, variant)},
                                        "spec": pod,
                                    }
                                }
                            },
                        }
                    ]
                }
            }
        },
    }
    return [
        {
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "metadata": object_metadata(spec, variant),
            "spec": {
                "runtimeRef": {"name": TRAINER_RUNTIME, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
                "trainer": trainer,
                "runtimePatches": [patch],
            },
        }
    ]


BUILDERS = {"indexed-job": indexed_job, "pytorchjob": pytorchjob, "trainjob": trainjob}


def manifests(variant: Variant, spec: JobSpec) -> list[dict[str, Any]]:
    validate(spec)
    documents = BUILDERS[spec.kind](variant, spec)
    kubernetes_schemas.check(documents)
    return documents


def write(variant: Variant, spec: JobSpec, folder: Path) -> Path:
    """The manifests as one JSON List, which `kubectl apply -f` takes as it takes YAML."""
    documents = manifests(variant, spec)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}-{spec.kind}.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}, indent=2) + "\n")
    return path
