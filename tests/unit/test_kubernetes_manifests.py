"""`invoke manifests`: the Indexed Job with its headless Service and the PyTorchJob. Each
pod's environment and name are made here as the controllers make them (the Job
controller's JOB_COMPLETION_INDEX and <job>-<index>.<subdomain> host names; the
training-operator's MASTER_ADDR <job>-master-0, MASTER_PORT from the port named
pytorchjob-port, RANK, WORLD_SIZE) from the manifest's own fields, then handed to train's
launcher: every pod must find the same master, the node count and a rank of its own."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError
from torchenv.model.matrix import load_matrix
from torchenv.pipeline import kubernetes, kubernetes_schemas
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


def test_every_trainjob_pod_finds_node_0_by_the_name_jobset_gives_it() -> None:
    variant = load_matrix().get("cu121")
    documents = kubernetes.manifests(variant, JobSpec("trainjob", "finetune", "ghcr.io/org/torchenv:cu121", nodes=3, gpus_per_node=4))
    trainer = documents[0]["spec"]["trainer"]
    assert not [item for item in trainer.get("env", []) if item["name"].startswith("PET_")], "Trainer's webhook refuses them"
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["resourcesPerNode"]) == (3, 4, {"limits": {"nvidia.com/gpu": 4}})
    pods = controllers.trainjob_pods(documents)
    assert [pod.hostname for pod in pods] == ["finetune-node-0-0", "finetune-node-0-1", "finetune-node-0-2"]
    plans = launch_plans(pods)
    assert {plan.master for plan in plans} == {"finetune-node-0-0.finetune:29500"}
    assert [plan.node_rank for plan in plans] == [0, 1, 2] and {plan.nnodes for plan in plans} == {3}
    assert {(plan.engine, plan.rdzv, plan.nproc) for plan in plans} == {("trainjob", "c10d", 4)}
    # A CPU variant: one process per pod, not one per CPU the pod asks for.
    cpu = kubernetes.manifests(load_matrix().get("cpu"), JobSpec("trainjob", "demo", "torchenv:cpu", nodes=2))
    assert {plan.nproc for plan in launch_plans(controllers.trainjob_pods(cpu))} == {1}


def test_a_rayjob_runs_raytrain_once_on_a_cluster_the_operator_starts() -> None:
    image = "ghcr.io/org/torchenv-raytrain:cu121"
    spec = JobSpec("rayjob", "finetune", image, nodes=3, gpus_per_node=4, out_claim="shared", ray_version="2.60.0")
    (job,) = kubernetes.manifests(load_matrix().get("cu121"), spec)
    cluster = job["spec"]["rayClusterSpec"]
    assert (cluster["rayVersion"], cluster["authOptions"]) == ("2.60.0", {"mode": "token"})
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    # The operator writes ray start itself, unless a command holds it; it finds the
    # dashboard (the submitter's address) by the port's name.
    assert "command" not in head and {port["name"]: port["containerPort"] for port in head["ports"]}["dashboard"] == 8265
    assert head["resources"]["limits"] == {"nvidia.com/gpu": 4}  # KubeRay's --num-gpus
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:3] == ["python", "-m", "raytrain"]
    options = dict(zip(entrypoint[3::2], entrypoint[4::2], strict=True))
    assert (options["--workers"], options["--min-nodes"], options["--gpus-per-worker"]) == ("12", "3", "1")
    assert options["--storage"].startswith("/out/")  # on the claim every node mounts
    assert {port["name"]: port["containerPort"] for port in head["ports"]}["gcs-server"] == 6379  # the workers' ray start --address
    # The token is the operator's to make and hand out (a Secret per cluster): none in the manifest.
    templates = [cluster["headGroupSpec"]["template"], workers["template"], job["spec"]["submitterPodTemplate"]]
    names = {item["name"] for template in templates for item in template["spec"]["containers"][0].get("env", [])}
    assert not {name for name in names if name.startswith("RAY_AUTH")}, names


@pytest.mark.parametrize("kind", kubernetes.KINDS)
def test_the_pods_are_non_root_read_only_with_writable_mounts_where_torch_writes(kind: str) -> None:
    variant = load_matrix().get("cpu")
    spec = JobSpec(kind, "demo", "torchenv:cpu", nodes=2, out_claim="shared-out", ray_version="2.60.0")
    for pod in controllers.PODS_OF[kind](kubernetes.manifests(variant, spec)):
        security = pod.template["spec"]["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] == 1000 and security["fsGroup"] == 1000
        main = main_container(pod)
        assert main["securityContext"]["readOnlyRootFilesystem"] and main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "resources" not in main  # a CPU variant asks for no GPU
        volumes = {volume["name"]: volume for volume in pod.template["spec"]["volumes"]}
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
        (JobSpec("mpijob", "demo", "i", 2), r"no manifest kind 'mpijob'; choose one of indexed-job, pytorchjob, trainjob"),
        (JobSpec("indexed-job", "Fine_Tune", "i", 2), r"--name 'Fine_Tune': a job's name must be lower-case letters"),
        (JobSpec("pytorchjob", "a" * 60, "i", 2), r"63 characters at most; try --name torchenv-train"),
        (JobSpec("indexed-job", "demo", "i", 0), r"--nodes 0 --gpus-per-node 1: a job needs a node at least"),
        # JobSet keeps <job>-node-0-<index>-xxxxx within a DNS label.
        (JobSpec("trainjob", "a" * 50, "i", 2), r"63 characters at most"),
        (JobSpec("rayjob", "demo", "i", 2, ray_version="2.60.0"), r"--kind rayjob --nodes 2: Ray Train keeps its checkpoints where"),
        (JobSpec("rayjob", "a" * 48, "i", 1, ray_version="2.60.0"), r"KubeRay takes a RayJob name of 47 characters at most"),
        # A quantity the API server would refuse (the built-in schemas take any string).
        (JobSpec("indexed-job", "demo", "i", 2, shm_size="8 GiB"), r"--shm-size '8 GiB' is not a Kubernetes quantity; write it like 8Gi"),
    ],
)
def test_a_bad_request_is_one_line(spec: JobSpec, message: str) -> None:
    with pytest.raises(TorchenvError, match=message):
        kubernetes.manifests(load_matrix().get("cpu"), spec)


SOURCES = PROJECT_ROOT / "kubernetes" / "crds" / "SOURCES.md"


@pytest.mark.parametrize(("key", "file"), [(key, file) for key, (file, _) in kubernetes_schemas.CUSTOM_RESOURCES.items()])
def test_each_crd_schema_is_the_one_its_sources_name(key: tuple[str, str], file: str) -> None:
    path = SOURCES.parent / file
    row = next(line for line in SOURCES.read_text().splitlines() if line.startswith(f"| {file} |"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() in row and key[1] in row
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        # A misspelt field passes a CRD's own schema; the strict check refuses it.
        ({"spec": {"trainer": {"numNode": 2}}}, r"\$\.spec\.trainer: Additional properties are not allowed \('numNode' was unexpected\)"),
        # Trainer v2.1's name for the patches, gone in v2.3.
        ({"spec": {"podTemplateOverrides": []}}, r"'podTemplateOverrides' was unexpected"),
        ({"spec": {"trainer": {"numNodes": "2"}}}, r"\$\.spec\.trainer\.numNodes: '2' is not of type 'integer'"),
        ({"spec": {"trainer": {"resourcesPerNode": {"limits": {"memory": "8 GiB"}}}}}, r"resourcesPerNode\.limits\.memory: "),
    ],
)
def test_a_custom_resource_its_crd_refuses_names_the_field(document: dict, message: str) -> None:
    (trainjob,) = kubernetes.manifests(load_matrix().get("cpu"), JobSpec("trainjob", "demo", "torchenv:cpu", nodes=2))
    broken = copy.deepcopy(trainjob)
    for key, value in document["spec"].items():
        broken["spec"][key] = {**broken["spec"].get(key, {}), **value} if isinstance(value, dict) else value
    assert not kubernetes_schemas.problems(trainjob)
    assert re.search(message, " ".join(kubernetes_schemas.problems(broken))), kubernetes_schemas.problems(broken)


def test_a_built_in_kind_the_api_refuses_names_the_field_and_release() -> None:
    service, job = kubernetes.manifests(load_matrix().get("cpu"), JobSpec("indexed-job", "demo", "torchenv:cpu", nodes=2))
    job = copy.deepcopy(job)
    job["spec"]["template"]["spec"]["containers"][0]["imagee"] = job["spec"]["template"]["spec"]["containers"][0].pop("image")
    found = kubernetes_schemas.problems(job)
    assert found[0] == (
        "$.spec.template.spec.containers.0: Additional properties are not allowed ('imagee' was unexpected) (Kubernetes 1.29)"
    ), found
    service = copy.deepcopy(service)
    service["spec"]["ports"][0]["port"] = "29500"
    assert "is not of type 'integer'" in kubernetes_schemas.problems(service)[0]
