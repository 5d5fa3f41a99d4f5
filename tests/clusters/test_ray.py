"""Ray Train on two nodes: the raytrain project (examples/raytrain: ray[default,train] locked
against the variant) built on the default variant, and its RayJob manifest played as
KubeRay plays it (controllers.py: a head, a worker after its wait-gcs-ready init
container, the operator's `ray start` commands, variables and token, then the submitter's
`ray job submit`), one container per pod on an internal network. TorchTrainer's two
workers, one per node, must train the model the compose DDP run trains, read back from
the shared claim with torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docker.types import Mount

from torchenv import PROJECT_ROOT
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline import kubernetes
from torchenv.pipeline.kubernetes import JobSpec
from torchenv.pipeline.project_build import build_project

from ..helpers import COMPARE
from .controllers import RAY_READY_URL, SUBMITTER_BACKOFF_LIMIT, rayjob_pods
from .pods import namespace
from .test_kubernetes import CLAIM, NAMESPACE

RAYTRAIN = PROJECT_ROOT / "examples" / "raytrain"
# raytrain's summary, and rank 0's checkpoint where the summary says Ray Train put it.
CHECKPOINT = '$(python -c \'import json; print(json.load(open("/out/raytrain/result.json"))["checkpoint"]["path"])\')/checkpoint.pt'


@pytest.fixture(scope="module")
def raytrain_image(image: str, variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_project(load_project(RAYTRAIN), variant, matrix, settings)


def test_a_rayjob_of_two_nodes_trains_the_model_compose_trains(raytrain_image: str, variant: Variant, reference: Path) -> None:
    ray = kubernetes.ray_version(load_project(RAYTRAIN), variant)
    spec = JobSpec("rayjob", "demo", raytrain_image, nodes=2, gpus_per_node=0, out_claim=CLAIM, ray_version=ray)
    cluster = rayjob_pods(kubernetes.manifests(variant, spec), NAMESPACE)
    with namespace(NAMESPACE, raytrain_image) as running:
        running.claim(CLAIM, kubernetes.USER_ID)
        running.start(cluster.head)
        for init, worker in cluster.workers:
            code, logs = running.run_to_completion(init, timeout=180)
            assert code == 0 and "GCS is ready." in logs, logs
            running.start(worker)
        # The RayJob controller submits once the RayCluster is ready: every Ray pod's probe.
        for pod in (cluster.head, *(worker for _, worker in cluster.workers)):
            running.probe(pod, RAY_READY_URL, timeout=180)
        for _attempt in range(SUBMITTER_BACKOFF_LIMIT + 1):
            code, logs = running.run_to_completion(cluster.submitter, timeout=600)
            if code == 0:
                break
        head_logs = running.logs(cluster.head.name)
        assert code == 0 and "raytrain: 2 ranks on 2 node(s) (gloo)" in logs, logs + head_logs
        # `ray job logs --follow` ends well for a failed job too: the job's status, as the
        # operator reads it from the dashboard, says how the entrypoint ended.
        status = running.containers[cluster.head.name].exec_run(
            ["ray", "job", "status", "--address", cluster.dashboard, cluster.submission_id], user=str(kubernetes.USER_ID)
        )
        said = status.output.decode(errors="replace")
        assert status.exit_code == 0 and f"Job '{cluster.submission_id}' succeeded" in said, said + logs
        result = running.client.containers.run(
            raytrain_image,
            ["sh", "-c", f"cat /out/raytrain/result.json && python -c '{COMPARE}' \"{CHECKPOINT}\" /reference/checkpoint.pt"],
            mounts=[Mount("/out", running.claims[CLAIM], type="volume", read_only=True)],
            volumes={str(reference.parent): {"bind": "/reference", "mode": "ro"}},
            network_mode="none",
            remove=True,
        ).decode()
    summary, compared = result.rsplit("\n", 2)[0], json.loads(result.strip().splitlines()[-1])
    metrics = json.loads(summary)["metrics"]
    assert json.loads(summary)["checkpoint"]["path"].startswith("/out/ray-results/"), summary  # on the claim
    placement = metrics["placement"]
    assert len({worker["node_id"] for worker in placement}) == 2, placement  # one rank on each node
    assert metrics["checksums_equal"] and metrics["world_size"] == 2
    assert compared["keys_equal"] and compared["max_abs_diff"] <= 1e-5, compared
