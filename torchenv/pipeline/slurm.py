"""Slurm: the rehearsal cluster (a controller and two compute nodes as containers of one
torchenv-slurm image, docker/slurm) that runs the demo with `sbatch`, and the batch
scripts a real cluster's users start from (pyxis, Apptainer)."""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import BuildRequest
from torchenv.errors import TorchenvError
from torchenv.model import names
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_variant, image_tag

SLURM_DIR = PROJECT_ROOT / "docker" / "slurm"
COMPOSE_FILE = SLURM_DIR / "compose.yaml"
# Where the image keeps the job script the rehearsal submits.
TRAIN_SCRIPT = "/opt/torchenv/slurm/train.sbatch"
CONTROLLER = "slurmctld"
NODES = ("slurm-node1", "slurm-node2")
# The user jobs run as: the image's own, with the same UID on every node.
JOB_USER = "torchenv"
TEMPLATES = {"pyxis": SLURM_DIR / "pyxis.sbatch.in", "apptainer": SLURM_DIR / "apptainer.sbatch.in"}


def image_reference(variant: Variant, settings: Settings) -> str:
    return f"{settings.image_name}-{names.SLURM_SUFFIX}:{variant.local_name}"


def build_image(variant: Variant, settings: Settings) -> str:
    """torchenv-slurm:<variant>: Debian's Slurm and munge added to the variant's image,
    which must be built already. Returns the reference."""
    base = image_tag(variant, settings)
    if engine.get().image_id(base) is None:
        raise TorchenvError(f"no image {base} yet; build it first: invoke build --variant {variant.name}")
    reference = image_reference(variant, settings)
    ca_bundle = settings.ca_bundle_path()
    request = BuildRequest(
        context=SLURM_DIR,
        platform=variant.platform,
        target=names.SLURM_STAGE,
        build_args={"TORCHENV_IMAGE": base},
        secrets={"ca-bundle": ca_bundle} if ca_bundle else {},
        tags=(reference,),
        progress=settings.progress,
    )
    result = engine.get().build(request, echo=False)
    if result.returncode != 0 or result.image_id is None:
        reason = next((line for line in reversed(result.tail) if line.strip()), f"exit {result.returncode}")
        raise TorchenvError(f"the Slurm image on {variant.name} could not be built: {reason}")
    return reference


@dataclass(frozen=True)
class Cluster:
    """The rehearsal cluster of one compose project: its directory holds the munge key and
    the nodes' shared /out."""

    folder: Path
    image: str

    @property
    def out(self) -> Path:
        return self.folder / "out"

    def environment(self) -> dict[str, str]:
        return {
            "TORCHENV_SLURM_IMAGE": self.image,
            "TORCHENV_MUNGE_KEY": str(self.folder / "munge.key"),
            "TORCHENV_SLURM_OUT": str(self.out),
        }

    def compose(self, *args: str, timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
        return engine.get().compose(args, self.folder, [COMPOSE_FILE], self.environment(), timeout=timeout)

    def up(self, ready_within_s: float = 120) -> None:
        """Starts the controller and the nodes, and waits until both nodes are idle."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.folder / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
            key.chmod(0o600)
        # The job's user writes its output and checkpoints to the shared /out.
        self.out.mkdir(exist_ok=True)
        self.out.chmod(0o1777)
        started = self.compose("up", "--detach", "--wait")
        if started.returncode != 0:
            raise TorchenvError(f"the Slurm cluster did not start: {engine.last_line(started.stderr)}")
        deadline = time.monotonic() + ready_within_s
        states: list[str] = []
        while time.monotonic() < deadline:
            shown = self.compose("exec", "-T", CONTROLLER, "sinfo", "--noheader", "--Node", "--format=%N %T")
            states = shown.stdout.split("\n") if shown.returncode == 0 else []
            idle = {line.split()[0] for line in states if line.strip().endswith(" idle")}
            if idle >= set(NODES):
                return
            time.sleep(2)
        raise TorchenvError(
            f"the Slurm nodes were not idle within {ready_within_s:.0f} s ({'; '.join(s for s in states if s) or 'no answer'}); "
            f"see `docker compose --file {COMPOSE_FILE} --project-directory {self.folder} logs`"
        )

    def sbatch(self, script: str, *arguments: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`sbatch --wait SCRIPT ARGUMENTS` as the job user on the controller: returns when
        the job ended, with its exit status."""
        command = ["exec", "-T", "--user", JOB_USER, CONTROLLER, "sbatch", "--parsable", "--wait", script, *arguments]
        return self.compose(*command, timeout=timeout)

    def job_output(self, job_id: str) -> str:
        path = self.out / f"slurm-{job_id}.out"
        return path.read_text() if path.exists() else ""

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "5")


def job_id(submitted: subprocess.CompletedProcess[str]) -> str:
    """The job's id from `sbatch --parsable` ("ID" or "ID;CLUSTER")."""
    first = submitted.stdout.strip().splitlines()[:1]
    if not first or not first[0].split(";")[0].isdigit():
        raise TorchenvError(f"sbatch gave no job id: {engine.last_line(submitted.stderr) or submitted.stdout.strip()}")
    return first[0].split(";")[0]


def rehearse(variant: Variant, matrix: Matrix, settings: Settings, train_arguments: list[str], keep: bool = False) -> Path:
    """`invoke slurm`: builds the variant (from the build cache when it was built) and its
    Slurm image, starts the cluster in build/slurm, submits the demo with `sbatch --wait`
    and prints its output. Returns the job's train output folder."""
    build_variant(variant, matrix, settings)
    image = build_image(variant, settings)
    cluster = Cluster(settings.work_dir / "slurm", image)
    try:
        cluster.up()
        submitted = cluster.sbatch(TRAIN_SCRIPT, *train_arguments)
        identifier = job_id(submitted)
        print(cluster.job_output(identifier), end="")
        if submitted.returncode != 0:
            raise TorchenvError(f"Slurm job {identifier} failed (exit {submitted.returncode}; its output above, in {cluster.out})")
        return cluster.out / f"slurm-{identifier}"
    finally:
        if not keep:
            cluster.down()


def enroot_uri(reference: str) -> str:
    """pyxis's --container-image for an image REFERENCE: enroot separates the registry from
    the repository with '#' (ghcr.io/org/torchenv:cu117 -> ghcr.io#org/torchenv:cu117); a
    name without a registry host is Docker Hub's and stays as it is."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return reference


def render(kind: str, variant: Variant, reference: str, nodes: int, gpus_per_node: int = 1) -> str:
    """A batch script of KIND (pyxis or apptainer) that runs the demo's train on NODES nodes
    from the image REFERENCE: the template with its placeholders filled. A CUDA variant asks
    for GPUS_PER_NODE GPUs on each node (train starts one process per GPU it sees)."""
    if kind not in TEMPLATES:
        raise TorchenvError(f"no Slurm template '{kind}'; choose one of {', '.join(sorted(TEMPLATES))}")
    if nodes < 1 or gpus_per_node < 1:
        raise TorchenvError(f"--nodes {nodes} --gpus-per-node {gpus_per_node}: a job needs at least one node and one GPU on each")
    values = {
        "@VARIANT@": variant.name,
        "@NODES@": str(nodes),
        "@GPU_REQUEST@": f"#SBATCH --gpus-per-node={gpus_per_node}" if variant.is_cuda else "# (a CPU variant: no GPUs asked for)",
        "@IMAGE@": shlex.quote(reference),
        "@ENROOT_IMAGE@": shlex.quote(enroot_uri(reference)),
        "@NV@": "--nv " if variant.is_cuda else "",
    }
    text = TEMPLATES[kind].read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def script_name(kind: str, variant: Variant) -> str:
    return f"torchenv-{variant.name}-{kind}.sbatch"


def write_script(kind: str, variant: Variant, reference: str, nodes: int, gpus_per_node: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / script_name(kind, variant)
    path.write_text(render(kind, variant, reference, nodes, gpus_per_node))
    path.chmod(0o755)
    return path
