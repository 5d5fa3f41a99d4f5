"""The Kubernetes manifests, emulated: no API server can run here, so each manifest's pods
are made as their controller makes them (controllers.py: names, host names, injected
variables, from the controllers' sources) and run as the kubelet would (pods.py: the
manifest's own command, user, read-only root, mounts, /dev/shm, DNS names and search
path), one container per pod on an internal network, the workers started before the
master. Each job must train the model the compose DDP run trains, read back from the
shared claim with torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from docker.types import Mount

from torchenv.model.matrix import Variant
from torchenv.pipeline import kubernetes
from torchenv.pipeline.kubernetes import JobSpec

from ..helpers import CHECKSUM_LINE, COMPARE
from . import controllers
from .pods import namespace

NAMESPACE = "research"
CLAIM = "shared-out"

PODS_OF = controllers.PODS_OF


# A RayJob's pods run Ray, not train: test_ray.py plays them.
@pytest.mark.parametrize("kind", sorted(set(PODS_OF) - {"rayjob"}))
def test_the_manifests_pods_train_the_model_compose_trains(kind: str, image: str, variant: Variant, reference: Path) -> None:
    documents = kubernetes.manifests(variant, JobSpec(kind, "demo", image, nodes=2, gpus_per_node=0, out_claim=CLAIM))
    pods = PODS_OF[kind](documents)
    with namespace(NAMESPACE, image) as running:
        running.claim(CLAIM, kubernetes.USER_ID)
        for pod in reversed(pods):
            running.start(pod)
        ended = running.wait(timeout=600)
        output = "\n".join(f"--- {name} (exit {code})\n{logs}" for name, (code, logs) in ended.items())
        assert {code for code, _ in ended.values()} == {0}, output
        compared = running.client.containers.run(
            image,
            ["python", "-c", COMPARE, "/out/checkpoint.pt", "/reference/checkpoint.pt"],
            mounts=[Mount("/out", running.claims[CLAIM], type="volume", read_only=True)],
            volumes={str(reference.parent): {"bind": "/reference", "mode": "ro"}},
            network_mode="none",
            remove=True,
        )
    reports = {match[1]: match for match in CHECKSUM_LINE.finditer(output)}
    assert set(reports) == {"0", "1"} and {(report[2], report[3]) for report in reports.values()} == {("2", "2")}, output
    assert len({report[4] for report in reports.values()}) == 1, output
    result = json.loads(compared)
    assert result["keys_equal"] and result["max_abs_diff"] <= 1e-5, result


# A C++ op built with torch's cpp_extension where the manifest puts torch's caches: the
# /tmp emptyDir on a read-only root, as the manifest's user.
LOAD_INLINE = (
    "import json, torch; from torch.utils.cpp_extension import load_inline; "
    "m = load_inline(name='k8s_axpy2', cpp_sources='torch::Tensor axpy2(torch::Tensor a, torch::Tensor b) { return a + 2 * b; }', "
    "functions=['axpy2']); print('RESULT', json.dumps([m.axpy2(torch.ones(3), torch.ones(3)).tolist(), m.__file__]))"
)


def test_a_pod_builds_and_loads_a_cpp_extension_in_its_tmp_empty_dir(image: str, variant: Variant) -> None:
    documents = kubernetes.manifests(variant, JobSpec("indexed-job", "ext", image, nodes=1, gpus_per_node=0))
    (pod,) = PODS_OF["indexed-job"](documents)
    template = json.loads(json.dumps(pod.template))
    container = template["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    container["command"], container["args"] = ["python", "-c", LOAD_INLINE], []
    with namespace(NAMESPACE, image) as running:
        running.start(dataclasses.replace(pod, template=template))
        ended = running.wait(timeout=600)
    ((code, logs),) = ended.values()
    assert code == 0, logs
    result, built = json.loads(logs.split("RESULT ", 1)[1].splitlines()[0])
    assert result == [3.0, 3.0, 3.0] and built.startswith("/tmp/torch_extensions/"), logs
