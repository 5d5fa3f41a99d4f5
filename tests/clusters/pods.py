"""The kubelet's part in the Kubernetes emulation: a pod template becomes one container,
as a node would run it. No API server can run here; what a pod sees is made as the
kubelet makes it, from the template's own fields:

- `command` replaces the image's entry point and `args` its command;
- the pod's and the container's securityContext: runAsUser/runAsGroup, fsGroup (a
  supplementary group owning every volume), readOnlyRootFilesystem, dropped capabilities,
  allowPrivilegeEscalation: false (no-new-privileges);
- volumes: an emptyDir is an empty directory writable by all, from which programs may run
  (the kubelet mounts none noexec, and torch loads the code it compiles there): here an
  exec tmpfs of its sizeLimit, since Docker's default tmpfs options are noexec (at
  /dev/shm, the container's /dev/shm of that size); a persistentVolumeClaim is one named
  volume shared by every pod that claims it (ReadWriteMany), group-owned by fsGroup;
- the host name `<hostname>` in the domain `<subdomain>.<namespace>.svc.cluster.local`, the
  DNS names its Services give it, and the search path of a pod's resolv.conf, so a short
  name (`job-0.job`, `job-master-0`) resolves as it does in the namespace;
- `env` entries with a `value`, and `valueFrom.fieldRef` read from the pod's metadata.

The controller's part (which pods, their names, the variables it injects) is in
controllers.py."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.types import Mount

from torchenv import engine
from torchenv.model.names import Label

CLUSTER_DOMAIN = "cluster.local"
FIELD_PATH = re.compile(r"metadata\.(annotations|labels)\['([^']+)'\]")


@dataclass(frozen=True)
class Pod:
    """One pod as its controller creates it: NAME, the TEMPLATE it stamps, the host name and
    subdomain it sets, the variables it injects into the container named CONTAINER, and the
    pod's own annotations and labels (what fieldRef reads)."""

    name: str
    template: Mapping[str, Any]
    hostname: str
    subdomain: str | None = None
    container: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Services other than the subdomain's that name this pod (PyTorchJob's one per replica).
    services: Sequence[str] = ()


def fqdn(pod: Pod, namespace: str) -> str:
    domain = f"{pod.subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}" if pod.subdomain else None
    return f"{pod.hostname}.{domain}" if domain else pod.hostname


def main_container(pod: Pod) -> dict[str, Any]:
    containers = pod.template["spec"]["containers"]
    return next(item for item in containers if item["name"] == pod.container) if pod.container else containers[0]


def environment(pod: Pod) -> dict[str, str]:
    """The container's variables: the template's, then the controller's (which win, as the
    controllers append theirs after the user's and the kubelet takes the last)."""
    found: dict[str, str] = {}
    metadata = {"annotations": {**pod.annotations}, "labels": {**pod.labels}}
    for item in main_container(pod).get("env", []):
        if "value" in item:
            found[item["name"]] = item["value"]
            continue
        path = item["valueFrom"]["fieldRef"]["fieldPath"]
        if path == "metadata.name":
            found[item["name"]] = pod.name
            continue
        match = FIELD_PATH.fullmatch(path)
        assert match, f"the emulation cannot read fieldRef {path}"
        found[item["name"]] = metadata[match[1]][match[2]]
    return {**found, **pod.env}


def mounts(pod: Pod, claims: Mapping[str, str]) -> tuple[list[Mount], dict[str, str], str | None]:
    """The container's mounts from the pod's volumes, its emptyDirs as tmpfs mounts (path ->
    options: exec, as an emptyDir is), and the size of its /dev/shm."""
    volumes = {volume["name"]: volume for volume in pod.template["spec"].get("volumes", [])}
    found: list[Mount] = []
    tmpfs: dict[str, str] = {}
    shm_size = None
    for mount in main_container(pod).get("volumeMounts", []):
        volume, path = volumes[mount["name"]], mount["mountPath"]
        read_only = bool(mount.get("readOnly"))
        if "emptyDir" in volume:
            size = kubernetes_bytes(volume["emptyDir"].get("sizeLimit"))
            if path == "/dev/shm":
                shm_size = str(size or 64 * 2**20)
                continue
            tmpfs[path] = ",".join(["exec", "mode=1777", *([f"size={size}"] if size else []), *(["ro"] if read_only else [])])
        elif "persistentVolumeClaim" in volume:
            found.append(Mount(path, claims[volume["persistentVolumeClaim"]["claimName"]], type="volume", read_only=read_only))
        else:
            raise AssertionError(f"the emulation has no volume like {volume}")
    return found, tmpfs, shm_size


def kubernetes_bytes(quantity: str | None) -> int | None:
    """A Kubernetes quantity ("8Gi", "512Mi", "1G") in bytes."""
    if quantity is None:
        return None
    match = re.fullmatch(r"(\d+)([KMGT]i?)?", quantity)
    assert match, f"the emulation cannot read the quantity {quantity!r}"
    suffix = match[2] or ""
    base = 1024 if suffix.endswith("i") else 1000
    return int(match[1]) * base ** ("KMGT".index(suffix[0]) + 1 if suffix else 0)


def user_of(pod: Pod) -> tuple[str | None, list[int]]:
    security = pod.template["spec"].get("securityContext", {})
    own = main_container(pod).get("securityContext", {})
    user, group = own.get("runAsUser", security.get("runAsUser")), own.get("runAsGroup", security.get("runAsGroup"))
    spelled = None if user is None else f"{user}:{group}" if group is not None else str(user)
    return spelled, [security["fsGroup"]] if "fsGroup" in security else []


@dataclass
class Namespace:
    """Pods on one network as one namespace: started in order, removed whatever happens."""

    namespace: str
    image: str
    client: docker.DockerClient = field(default_factory=lambda: engine.get().client)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    containers: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)

    def claim(self, name: str, fs_group: int) -> None:
        """A ReadWriteMany claim: a named volume, group-owned by FS_GROUP and setgid, as the
        kubelet leaves a volume for a pod with fsGroup."""
        volume = self.client.volumes.create(f"torchenv-test-{self.tag}-{name}", labels={Label.TEST: "1"})
        self.claims[name] = volume.name
        self.client.containers.run(
            self.image,
            ["sh", "-c", f"chgrp {fs_group} /v && chmod 2775 /v"],
            user="0:0",
            entrypoint=[],
            mounts=[Mount("/v", volume.name, type="volume")],
            network_mode="none",
            remove=True,
        )

    def start(self, pod: Pod) -> None:
        spec, main = pod.template["spec"], main_container(pod)
        assert spec.get("restartPolicy") in (None, "Never", "OnFailure")
        own = main.get("securityContext", {})
        user, groups = user_of(pod)
        found, tmpfs, shm_size = mounts(pod, self.claims)
        name = f"torchenv-test-{self.tag}-{pod.name}"
        names = [fqdn(pod, self.namespace), *(f"{service}.{self.namespace}.svc.{CLUSTER_DOMAIN}" for service in pod.services)]
        endpoint = self.client.api.create_endpoint_config(aliases=names)
        created = self.client.api.create_container(
            main["image"],
            command=main.get("args"),
            entrypoint=main.get("command"),
            hostname=pod.hostname,
            domainname=fqdn(pod, self.namespace).partition(".")[2] or None,
            user=user,
            environment=environment(pod),
            name=name,
            labels={Label.TEST: "1"},
            networking_config=self.client.api.create_networking_config({self.network: endpoint}),
            host_config=self.client.api.create_host_config(
                network_mode=self.network,
                mounts=found,
                tmpfs=tmpfs or None,
                shm_size=shm_size,
                group_add=groups or None,
                read_only=bool(own.get("readOnlyRootFilesystem")),
                cap_drop=own.get("capabilities", {}).get("drop"),
                security_opt=["no-new-privileges"] if own.get("allowPrivilegeEscalation") is False else None,
                dns_search=[f"{self.namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN],
            ),
        )
        # Registered before it starts: namespace() removes it whatever happens next.
        self.containers[pod.name] = self.client.containers.get(created["Id"])
        self.containers[pod.name].start()

    def probe(self, pod: Pod, url: str, timeout: float) -> None:
        """A readiness probe's HTTP GET of URL from inside the pod, until it answers 2xx."""
        deadline = time.monotonic() + timeout
        check = ["python", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2)"]
        container = self.containers[pod.name]
        while True:
            container.reload()
            assert container.status == "running", f"{pod.name} ended before it was ready:\n{self.logs(pod.name)}"
            if container.exec_run(check, user=user_of(pod)[0] or "").exit_code == 0:
                return
            assert time.monotonic() < deadline, f"{pod.name} was not ready within {timeout} s ({url}):\n{self.logs(pod.name)}"
            time.sleep(1)

    def logs(self, name: str) -> str:
        return self.containers[name].logs().decode(errors="replace")

    def exit_code(self, name: str, deadline: float) -> int:
        """The pod's exit code, waiting until DEADLINE (time.monotonic()) at most."""
        try:
            return int(self.containers[name].wait(timeout=max(1.0, deadline - time.monotonic()))["StatusCode"])
        except requests.exceptions.ConnectionError:  # the wait's read timed out
            raise AssertionError(f"{name} did not end in time:\n{self.logs(name)}") from None

    def run_to_completion(self, pod: Pod, timeout: float) -> tuple[int, str]:
        """An init container (or a Job's pod): started, waited for, its exit code and output."""
        self.start(pod)
        try:
            return self.exit_code(pod.name, time.monotonic() + timeout), self.logs(pod.name)
        finally:
            self.containers.pop(pod.name).remove(force=True)

    @property
    def network(self) -> str:
        return f"torchenv-test-{self.tag}"

    def wait(self, timeout: float) -> dict[str, tuple[int, str]]:
        """Each pod's exit code and output, once every one has ended (TIMEOUT for them all)."""
        deadline = time.monotonic() + timeout
        return {name: (self.exit_code(name, deadline), self.logs(name)) for name in self.containers}


@contextmanager
def namespace(name: str, image: str) -> Iterator[Namespace]:
    found = Namespace(name, image)
    # Internal: the pods reach each other and nothing else, as this machine's jobs must.
    network = found.client.networks.create(found.network, internal=True, labels={Label.TEST: "1"})
    try:
        yield found
    finally:
        # Each removal on its own: one that fails leaves the others to run.
        with ExitStack() as cleanup:
            for volume in found.claims.values():
                cleanup.callback(lambda volume=volume: found.client.volumes.get(volume).remove(force=True))
            cleanup.callback(network.remove)
            for container in found.containers.values():
                cleanup.callback(container.remove, force=True)
