"""`invoke manifests`: the Indexed Job with its headless Service and the PyTorchJob. Each
pod's environment and name are made here as the controllers make them (the Job
controller's JOB_COMPLETION_INDEX and <job>-<index>.<subdomain> host names; the
training-operator's MASTER_ADDR <job>-master-0, MASTER_PORT from the port named
pytorchjob-port, RANK, WORLD_SIZE) from the manifest's own fields, then handed to train's
launcher: every pod must find the same master, the node count and a rank of its own."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError
from torchenv.model.matrix import load_matrix
from torchenv.pipeline import kubernetes
from torchenv.pipeline.kubernetes import JobSpec

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import cluster, train

from ..clusters import controllers
from ..clusters.pods import Pod, environment, fqdn, main_container

NAMESPACE = "research"


def launch_plans(pods: list[Pod]) -> list[cluster.LaunchPlan]:
    """Each pod's environment, as the controller and the kubelet make it, handed to train's
    launcher with the container's own command."""
    plans = []
    for pod in pods:
        command = [*main_container(pod)["command"], *main_container(pod).get("args", [])]
        assert command[0] == "train", command
        args = train.parse_args(command[1:])
        name = functools.partial(fqdn, pod, NAMESPACE)
        found = cluster.plan_from(args, environment(pod), lambda: 8, max_restarts=args.max_restarts, fqdn=name, timeout=args.rdzv_timeout)
        plans.append(found)
    return plans


def test_every_indexed_job_pod_finds_pod_0_through_the_service() -> None:
    variant = load_matrix().get("cu121")
    documents = kubernetes.manifests(variant, JobSpec("indexed-job", "finetune", "ghcr.io/org/torchenv:cu121", nodes=3, gpus_per_node=4))
    service, job = documents
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    pod = job["spec"]["template"]["spec"]
    # The Job controller labels its pods job-name=<job>: the Service's selector must match.
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert pod["subdomain"] == service["metadata"]["name"] and job["spec"]["completionMode"] == "Indexed"
    (main,) = pod["containers"]
    plans = launch_plans(controllers.indexed_job_pods(documents))
    assert {plan.master for plan in plans} == {f"finetune-0.finetune.{NAMESPACE}.svc.cluster.local:29500"}
    assert [plan.node_rank for plan in plans] == [0, 1, 2] and {plan.nnodes for plan in plans} == {3}
    assert {(plan.rdzv, plan.max_restarts, plan.nproc) for plan in plans} == {("c10d", 3, 4)}  # a process per GPU asked for
    assert main["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert service["spec"]["ports"][0]["port"] == main["ports"][0]["containerPort"] == 29500


def test_every_pytorchjob_pod_finds_the_master_the_controller_names() -> None:
    variant = load_matrix().get("cu117")
    documents = kubernetes.manifests(variant, JobSpec("pytorchjob", "finetune", "ghcr.io/org/torchenv:cu117", nodes=3))
    replicas = documents[0]["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    pods = controllers.pytorchjob_pods(documents)
    for pod in pods:
        assert not main_container(pod).get("env"), "the controller sets the job's variables; the manifest none"
    plans = launch_plans(pods)
    assert {plan.master for plan in plans} == {"finetune-master-0:23456"}
    assert sorted(plan.node_rank for plan in plans) == [0, 1, 2] and {plan.nnodes for plan in plans} == {3}
    assert {plan.nproc for plan in plans} == {1}  # the default: one GPU per pod


@pytest.mark.parametrize("kind", kubernetes.KINDS)
def test_the_pods_are_non_root_read_only_with_writable_mounts_where_torch_writes(kind: str) -> None:
    variant = load_matrix().get("cpu")
    documents = kubernetes.manifests(variant, JobSpec(kind, "demo", "torchenv:cpu", nodes=2, out_claim="shared-out"))
    pods = [document["spec"]["template"]["spec"] for document in documents if document["kind"] == "Job"] or [
        replica["template"]["spec"] for replica in documents[0]["spec"]["pytorchReplicaSpecs"].values()
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
        (main,) = pod["containers"]
        assert main["securityContext"]["readOnlyRootFilesystem"] and main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "resources" not in main  # a CPU variant asks for no GPU
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in main["volumeMounts"]}
        assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
        assert "emptyDir" in mounts["/tmp"]  # torch.compile writes and loads code there (the image's caches too)
        assert mounts["/out"]["persistentVolumeClaim"] == {"claimName": "shared-out"}


def test_the_file_is_a_list_kubectl_applies(tmp_path: Path) -> None:
    path = kubernetes.write(load_matrix().get("cpu"), JobSpec("indexed-job", "demo", "torchenv:cpu", nodes=2), tmp_path)
    document = json.loads(path.read_text())
    assert (document["kind"], [item["kind"] for item in document["items"]]) == ("List", ["Service", "Job"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (JobSpec("mpijob", "demo", "i", 2), r"no manifest kind 'mpijob'; choose one of indexed-job, pytorchjob"),
        (JobSpec("indexed-job", "Fine_Tune", "i", 2), r"--name 'Fine_Tune': a job's name must be lower-case letters"),
        (JobSpec("pytorchjob", "a" * 60, "i", 2), r"63 characters at most; try --name torchenv-train"),
        (JobSpec("indexed-job", "demo", "i", 0), r"--nodes 0 --gpus-per-node 1: a job needs a node"),
    ],
)
def test_a_bad_request_is_one_line(spec: JobSpec, message: str) -> None:
    with pytest.raises(TorchenvError, match=message):
        kubernetes.manifests(load_matrix().get("cpu"), spec)
