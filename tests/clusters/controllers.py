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
- TrainJob: kubeflow/trainer v2.3.0 (658725b) on JobSet v0.12.0 (f22e565). The
  torch-distributed runtime (manifests/base/runtimes/torch_distributed.yaml) has one
  replicated Job and container, `node`; the JobSet plugin puts the trainer's image,
  command, args and resourcesPerNode on it (plugins/jobset/builder.go), the torch plugin
  appends PET_NNODES, PET_NPROC_PER_NODE (numProcPerNode; else "auto" with a GPU, else the
  CPU request), PET_NODE_RANK (a fieldRef to the completion index), PET_MASTER_ADDR
  `<job>-node-0-0.<job>`, PET_MASTER_PORT 29500 and the port (plugins/torch/torch.go), then
  the runtime patches are merged strategically (containers and volumes by name). JobSet
  names the Job `<job>-node-0` (Indexed, pod i `<job>-node-0-<i>`) with the subdomain and
  headless Service `<job>`.
- RayJob: ray-project/kuberay v1.6.2 (598eb66), ray-operator/controllers/ray. The RayJob's
  RayCluster is `<job>-<5 characters>` (utils.GenerateRayClusterName), its head Service
  `<cluster>-head-svc`, and the RayJob's own `<job>-head-svc` (common/service.go,
  common/job.go). Each Ray container (the first of its pod) gets `/bin/bash -c --` and
  `ulimit -n 65536; ray start ...` (common/pod.go BuildPod, generateRayStartCommand), the
  variables of setContainerEnvVars and, with authOptions mode token, RAY_AUTH_MODE and
  RAY_AUTH_TOKEN from a Secret the operator makes (SetContainerTokenAuthEnvVars); a worker
  waits in the init container wait-gcs-ready for `ray health-check`. Once every Ray pod
  is ready (the probe KubeRay gives Ray 2.53 and later: GET /api/healthz on the dashboard
  agent's port 52365), K8sJobMode's submitter Job (backoffLimit 2 by default) runs `ray
  job submit --no-wait ... -- ENTRYPOINT` against the head's dashboard, then `ray job logs
  --follow` (common/job.go BuildJobSubmitCommand, rayjob_controller.go).
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


TRAINER_NODE, TRAINER_PORT = "node", 29500
# The runtime's own pod, as torch_distributed.yaml at v2.3.0 has it.
TORCH_DISTRIBUTED_RUNTIME = {
    "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
    "spec": {"containers": [{"name": TRAINER_NODE, "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"}]},
}


def merged_by_name(base: list[dict[str, Any]], patch: list[dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    """A strategic merge of two lists keyed by KEY: items of the same key merged, new ones appended."""
    found = {item[key]: copy.deepcopy(item) for item in base}
    for item in patch:
        found[item[key]] = {**found.get(item[key], {}), **copy.deepcopy(item)}
    return list(found.values())


def trainjob_pods(documents: Sequence[Mapping[str, Any]]) -> list[Pod]:
    job = of_kind(documents, "TrainJob")
    name, spec = job["metadata"]["name"], job["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    for variable in trainer.get("env", []):
        assert not variable["name"].startswith("PET_"), f"the webhook refuses {variable['name']} in trainer.env"
    template = copy.deepcopy(TORCH_DISTRIBUTED_RUNTIME)
    (node,) = template["spec"]["containers"]
    node.update({key: trainer[key] for key in ("image", "command", "args") if key in trainer})
    if "resourcesPerNode" in trainer:
        node["resources"] = copy.deepcopy(trainer["resourcesPerNode"])
    limits = node.get("resources", {}).get("limits", {})
    requests = node.get("resources", {}).get("requests", {})
    nproc = trainer.get("numProcPerNode")
    if nproc is None:
        nproc = "auto" if any(key.endswith("/gpu") for key in limits) else str(max(1, int(requests.get("cpu", limits.get("cpu", 1)))))
    completion_index = {"fieldRef": {"fieldPath": f"metadata.annotations['{JOB_COMPLETION_INDEX}']"}}
    node["env"] = [
        *trainer.get("env", []),
        {"name": "PET_NNODES", "value": str(trainer["numNodes"])},
        {"name": "PET_NPROC_PER_NODE", "value": str(nproc)},
        {"name": "PET_NODE_RANK", "valueFrom": completion_index},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-{TRAINER_NODE}-0-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": str(TRAINER_PORT)},
    ]
    node["ports"] = [{"containerPort": TRAINER_PORT, "protocol": "TCP"}]
    for patch in spec.get("runtimePatches", []):
        for replicated in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            assert replicated["name"] == TRAINER_NODE
            pod = replicated["template"]["spec"]["template"]
            template["metadata"]["labels"].update(pod.get("metadata", {}).get("labels", {}))
            patched = pod.get("spec", {})
            for container in patched.get("containers", []):
                assert "env" not in container, "the webhook refuses env in a patch of container node"
            template["spec"]["containers"] = merged_by_name(template["spec"]["containers"], patched.get("containers", []))
            template["spec"]["volumes"] = merged_by_name(template["spec"].get("volumes", []), patched.get("volumes", []))
            template["spec"].update({key: copy.deepcopy(value) for key, value in patched.items() if key not in ("containers", "volumes")})
    job_name = f"{name}-{TRAINER_NODE}-0"
    return [
        Pod(
            name=f"{job_name}-{index}",
            template=template,
            hostname=f"{job_name}-{index}",
            subdomain=name,
            container=TRAINER_NODE,
            annotations={JOB_COMPLETION_INDEX: str(index)},
            labels={**template["metadata"]["labels"], "jobset.sigs.k8s.io/jobset-name": name, "job-name": job_name},
        )
        for index in range(trainer["numNodes"])
    ]


RAY_HEAD_PORT, RAY_DASHBOARD_PORT = 6379, 8265
# A Ray pod's readiness (KubeRay's probe for Ray 2.53 and later), and the submitter Job's retries.
RAY_READY_URL = "http://127.0.0.1:52365/api/healthz"
SUBMITTER_BACKOFF_LIMIT = 2
RAY_START_FLAGS = "--block --dashboard-agent-listen-port=52365"


@dataclass(frozen=True)
class RayCluster:
    """A RayJob's pods in the order the operator's work makes them run: the head, each
    worker after its init container, the submitter once the head is up."""

    head: Pod
    workers: list[tuple[Pod, Pod]]  # (wait-gcs-ready, the worker)
    submitter: Pod
    # What the operator asks the dashboard for the job's status by (and writes to the RayJob's).
    submission_id: str
    dashboard: str


def ray_start(head: bool, params: Mapping[str, str], address: str) -> str:
    flags = dict(params)
    if head:
        flags.setdefault("dashboard-host", "0.0.0.0")
    else:
        flags.setdefault("address", address)
    flags.setdefault("metrics-export-port", "8080")
    extra = " ".join(f"--{key}={value}" for key, value in sorted(flags.items()))
    return f"ray start {'--head ' if head else ''}{RAY_START_FLAGS} {extra}"


def with_command(template: Mapping[str, Any], command: list[str], env: list[dict[str, Any]]) -> dict[str, Any]:
    found = copy.deepcopy(dict(template))
    main = found["spec"]["containers"][0]
    assert "ray start" not in " ".join(main.get("command", []) + main.get("args", [])), "the operator writes ray start itself"
    user = " ".join([*main.get("command", []), *main.get("args", [])])
    main["command"], main["args"] = command[:3], [f"{user} && {command[3]}" if user else command[3]]
    main["env"] = [*main.get("env", []), *env]
    return found


def rayjob_pods(documents: Sequence[Mapping[str, Any]], namespace: str) -> RayCluster:
    job = of_kind(documents, "RayJob")
    name, spec = job["metadata"]["name"], job["spec"]
    cluster_spec = spec["rayClusterSpec"]
    cluster = f"{name}-{secrets.token_hex(3)[:5]}"
    head_service = f"{cluster}-head-svc"
    fqdn = f"{head_service}.{namespace}.svc.cluster.local"
    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if cluster_spec.get("authOptions", {}).get("mode") == "token" else {}
    common = {"RAY_CLUSTER_NAME": cluster, "RAY_CLUSTER_NAMESPACE": namespace, "RAY_PORT": str(RAY_HEAD_PORT)}
    common |= {"RAY_USAGE_STATS_KUBERAY_IN_USE": "1", "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE": "1"}
    bash = ["/bin/bash", "-c", "--"]

    head_group = cluster_spec["headGroupSpec"]
    start = ray_start(True, head_group["rayStartParams"], "")
    head_name = f"{cluster}-head-{secrets.token_hex(3)[:5]}"
    head_env = {**common, "RAY_CLOUD_INSTANCE_ID": head_name, "RAY_NODE_TYPE_NAME": "headgroup", "KUBERAY_GEN_RAY_START_CMD": start}
    head_env |= {"RAY_ADDRESS": f"127.0.0.1:{RAY_HEAD_PORT}", "RAY_USAGE_STATS_EXTRA_TAGS": "kuberay_version=v1.6.2;kuberay_crd=RayJob"}
    head = Pod(
        head_name,
        with_command(head_group["template"], [*bash, f"ulimit -n 65536; {start}"], []),
        hostname=head_name,
        env={**head_env, **auth},
        services=[head_service, f"{name}-head-svc"],
    )
    workers = []
    for group in cluster_spec.get("workerGroupSpecs", []):
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        start = ray_start(False, group["rayStartParams"], f"{fqdn}:{RAY_HEAD_PORT}")
        for _ in range(group["replicas"]):
            pod_name = f"{cluster}-{group['groupName']}-worker-{secrets.token_hex(3)[:5]}"
            env = {**common, "RAY_CLOUD_INSTANCE_ID": pod_name, "RAY_NODE_TYPE_NAME": group["groupName"]}
            env |= {"KUBERAY_GEN_RAY_START_CMD": start, "RAY_ADDRESS": f"{fqdn}:{RAY_HEAD_PORT}", "FQ_RAY_IP": fqdn, "RAY_IP": head_service}
            wait = (
                f"SECONDS=0; until ray health-check --address {fqdn}:{RAY_HEAD_PORT} > /dev/null 2>&1; do "
                f'if (( SECONDS > 120 )); then ray health-check --address {fqdn}:{RAY_HEAD_PORT}; fi; sleep 5; done; echo "GCS is ready."'
            )
            init = Pod(
                f"{pod_name}-init", with_command(group["template"], [*bash, wait], []), hostname=pod_name, env={"FQ_RAY_IP": fqdn, **auth}
            )
            worker = Pod(
                pod_name, with_command(group["template"], [*bash, f"ulimit -n 65536; {start}"], []), hostname=pod_name, env={**env, **auth}
            )
            workers.append((init, worker))

    # The submitter finds the dashboard by the head container's port of that name.
    ports = {port.get("name"): port["containerPort"] for port in head_group["template"]["spec"]["containers"][0].get("ports", [])}
    dashboard_port = ports.get("dashboard", RAY_DASHBOARD_PORT) if ports else RAY_DASHBOARD_PORT
    dashboard = f"http://{fqdn}:{dashboard_port}"
    submission = f"{name}-{secrets.token_hex(3)[:5]}"
    entrypoint = spec["entrypoint"].strip()
    submit = (
        f"if ! ray job status --address {dashboard} {submission} >/dev/null 2>&1 ; then "
        f"ray job submit --address {dashboard} --no-wait --submission-id {submission} -- {entrypoint} ; fi ; "
        f"ray job logs --address {dashboard} --follow {submission}"
    )
    submitter_template = copy.deepcopy(spec["submitterPodTemplate"])
    main = submitter_template["spec"]["containers"][0]
    main["command"], main["args"] = ["/bin/bash", "-ce", "--"], [submit]
    submitter_env = {"PYTHONUNBUFFERED": "1", "RAY_DASHBOARD_ADDRESS": f"{fqdn}:{dashboard_port}", "RAY_JOB_SUBMISSION_ID": submission}
    submitter = Pod(f"{name}-submitter", submitter_template, hostname=f"{name}-submitter", env={**submitter_env, **auth})
    return RayCluster(head, workers, submitter, submission, dashboard)


def ray_node_pods(documents: Sequence[Mapping[str, Any]]) -> list[Pod]:
    """A RayJob's Ray nodes: the head and the workers (not the submitter, nor init containers)."""
    cluster = rayjob_pods(documents, "default")
    return [cluster.head, *(worker for _, worker in cluster.workers)]


PODS_OF = {"indexed-job": indexed_job_pods, "pytorchjob": pytorchjob_pods, "trainjob": trainjob_pods, "rayjob": ray_node_pods}
