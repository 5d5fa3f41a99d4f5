"""The Kubernetes manifests, emulated: no API server can run here, so each manifest's pods
are made as their controller makes them (controllers.py: names, host names, injected
variables, from the controllers' sources) and run as the kubelet would (pods.py: the
manifest's own command, user, read-only root, mounts, /dev/shm, DNS names and search
path), one container per pod on an internal network, the workers started before the
master. Each job must train the model the compose DDP run trains, read back from the
shared claim with torch."""

from __future__ import annotations

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
