"""Kubernetes manifests for a variant's image on N nodes (`invoke manifests`): an Indexed
Job with its headless Service, a Kubeflow PyTorchJob, a Kubeflow Trainer v2 TrainJob, or
a KubeRay RayJob (the raytrain project's image: Ray Train's TorchTrainer). Each pod of the
first three runs `train`, which reads its place from what the controller injects
(docker/app/torchenv_app/cluster.py); the manifests set nothing torchrun or the controller
sets itself.

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
from torchenv.locking.project_locks import read_project_lock
from torchenv.model.matrix import Variant
from torchenv.model.project import Project
from torchenv.pipeline import kubernetes_schemas

KINDS = ("indexed-job", "pytorchjob", "trainjob", "rayjob")
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
# KubeRay v1.6 (ray.io/v1): the head's ports by the names the operator looks for (the
# submitter finds the dashboard by its name), and a RayJob's longest name (MaxRayJobNameLength).
RAY_PORTS = (("gcs-server", 6379), ("dashboard", 8265), ("client", 10001))
RAYJOB_NAME_LIMIT = 47
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
    # A RayJob's: the Ray its image holds (the raytrain project's lock).
    ray_version: str | None = None


def validate(spec: JobSpec) -> None:
    if spec.kind not in KINDS:
        raise TorchenvError(f"no manifest kind '{spec.kind}'; choose one of {', '.join(KINDS)}")
    longest = len(longest_pod_name(spec))
    if not NAME.fullmatch(spec.name) or longest > 63:
        raise TorchenvError(
            f"--name {spec.name!r}: a job's name must be lower-case letters, digits and '-', start with a letter and leave "
            f"its pods' host names (here the longest is {longest_pod_name(spec)}) 63 characters at most; try --name torchenv-train"
        )
    if spec.kind == "rayjob" and len(spec.name) > RAYJOB_NAME_LIMIT:
        limit = RAYJOB_NAME_LIMIT
        raise TorchenvError(f"--name {spec.name!r}: KubeRay takes a RayJob name of {limit} characters at most; try --name torchenv-train")
    if spec.kind == "rayjob" and spec.nodes > 1 and not spec.out_claim:
        raise TorchenvError(
            f"--kind rayjob --nodes {spec.nodes}: Ray Train keeps its checkpoints where every node sees them; "
            "pass --out-claim a ReadWriteMany PersistentVolumeClaim"
        )
    if not QUANTITY.fullmatch(spec.shm_size):
        raise TorchenvError(f"--shm-size {spec.shm_size!r} is not a Kubernetes quantity; write it like 8Gi or 512Mi")
    if spec.nodes < 1 or spec.gpus_per_node < 0:
        raise TorchenvError(
            f"--nodes {spec.nodes} --gpus-per-node {spec.gpus_per_node}: a job needs a node at least, and 0 GPUs or more on each"
        )


def longest_pod_name(spec: JobSpec) -> str:
    """The longest host name a job's pods get (a DNS label: 63 characters at most)."""
    if spec.kind == "pytorchjob":
        return f"{spec.name}-worker-{spec.nodes - 2}" if spec.nodes > 1 else f"{spec.name}-master-0"
    if spec.kind == "rayjob":
        # The operator's head Service: <job>-<5 characters>-head-svc (validate keeps KubeRay's own limit).
        return f"{spec.name}-xxxxx-head-svc"
    if spec.kind == "trainjob":
        # JobSet's pods: <jobset>-<replicated job>-<job index>-<pod index>, and its webhook
        # keeps room for the 5 characters the Job controller appends to a pod's name.
        return f"{spec.name}-{TRAINER_NODE}-0-{spec.nodes - 1}-xxxxx"
    return f"{spec.name}-{spec.nodes - 1}"


def gpus(variant: Variant, spec: JobSpec) -> int:
    """GPUs each pod asks for: none for a CPU variant, and none where asked (a CUDA image on CPU nodes)."""
    return spec.gpus_per_node if variant.is_cuda else 0


def container(variant: Variant, spec: JobSpec, name: str, port: dict[str, Any], env: list[dict[str, str]]) -> dict[str, Any]:
    # One torchrun per pod, a process per GPU asked for (none of these engines says how
    # many a pod has); the Job or the controller replaces a lost pod, and torchrun's
    # restarts resume the others from /out's checkpoint.
    command = ["train", "--out", OUT, "--max-restarts", str(spec.max_restarts)]
    count = gpus(variant, spec)
    command += ["--nproc", str(count)] if count else []
    limits = {"nvidia.com/gpu": count} if count else {}
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
        "numProcPerNode": gpus(variant, spec) or 1,
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


def ray_version(project: Project, variant: Variant) -> str:
    """The Ray a project's image holds for VARIANT, from its lock (KubeRay's rayVersion)."""
    lock = read_project_lock(project, variant)
    version = lock.packages.get("ray") if lock else None
    if not version:
        raise TorchenvError(
            f"the project {project.name} has no lock with ray for {variant.name}: a RayJob runs an image with Ray; "
            f"build one with `invoke build --variant {variant.name} --project examples/raytrain`"
        )
    return version


def ray_container(variant: Variant, spec: JobSpec, name: str, ports: bool) -> dict[str, Any]:
    """A Ray node's container: no command (KubeRay writes `ray start` for it), the pods'
    user and mounts, and for the head the ports the operator's Service and submitter use."""
    main = container(variant, spec, name, {}, [{"name": "RAY_USAGE_STATS_ENABLED", "value": "0"}])
    del main["command"]
    if ports:
        main["ports"] = [{"name": port_name, "containerPort": number} for port_name, number in RAY_PORTS]
    return main


def rayjob(variant: Variant, spec: JobSpec) -> list[dict[str, Any]]:
    """KubeRay's RayJob (ray.io/v1, KubeRay v1.6): a RayCluster of a head and NODES - 1
    workers started by the operator, then the entrypoint submitted to it once (`ray job
    submit`, from a submitter pod): raytrain's TorchTrainer, a worker per GPU (per node on
    CPUs), spread over the nodes. The TorchTrainer sets up the process group itself."""
    if not spec.ray_version:
        raise TorchenvError("a RayJob needs the Ray version its image holds; build the image with the raytrain project")
    workers = spec.nodes * (gpus(variant, spec) or 1)
    entrypoint = ["python", "-m", "raytrain", "--workers", str(workers), "--min-nodes", str(spec.nodes), "--out", f"{OUT}/raytrain"]
    # One worker per node on CPUs, placed so; on GPUs, Ray's GPU count per node places them.
    entrypoint += ["--gpus-per-worker", "1"] if gpus(variant, spec) else ["--placement", "STRICT_SPREAD"]
    entrypoint += ["--storage", f"{OUT}/ray-results"]

    def template(name: str, head: bool) -> dict[str, Any]:
        return {"metadata": {"labels": labels(spec, variant)}, "spec": pod_spec(variant, spec, ray_container(variant, spec, name, head))}

    submitter = pod_spec(variant, spec, ray_container(variant, spec, "ray-job-submitter", False))
    submitter["containers"][0].pop("resources", None)
    submitter["containers"][0]["volumeMounts"] = [mount for mount in submitter["containers"][0]["volumeMounts"] if mount["name"] == "tmp"]
    submitter["volumes"] = [volume for volume in submitter["volumes"] if volume["name"] == "tmp"]
    cluster: dict[str, Any] = {
        "rayVersion": spec.ray_version,
        # Ray 2.52 and later: the operator makes a token (a Secret) and gives it to every node
        # and the submitter; without it the nodes refuse each other.
        "authOptions": {"mode": "token"},
        "headGroupSpec": {"rayStartParams": {}, "template": template("ray-head", True)},
    }
    if spec.nodes > 1:
        others = spec.nodes - 1
        cluster["workerGroupSpecs"] = [
            {
                "groupName": "workers",
                "replicas": others,
                "minReplicas": others,
                "maxReplicas": others,
                "rayStartParams": {},
                "template": template("ray-worker", False),
            }
        ]
    return [
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": object_metadata(spec, variant),
            "spec": {
                "entrypoint": " ".join(entrypoint),
                "shutdownAfterJobFinishes": True,
                "ttlSecondsAfterFinished": 600,
                "rayClusterSpec": cluster,
                "submitterPodTemplate": {"metadata": {"labels": labels(spec, variant)}, "spec": {"restartPolicy": "Never", **submitter}},
            },
        }
    ]


BUILDERS = {"indexed-job": indexed_job, "pytorchjob": pytorchjob, "trainjob": trainjob, "rayjob": rayjob}


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
