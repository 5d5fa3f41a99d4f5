"""Inside each real image: versions as the matrix says, CUDA build, cuDNN, the demo,
the non-root user, a clean dependency set, and no build secrets or caches left behind."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import datetime

import pytest

from torchenv import engine
from torchenv.engine import RunOptions
from torchenv.locking.locks import read_lock
from torchenv.model import platforms
from torchenv.model.matrix import Variant
from torchenv.model.names import Label
from torchenv.model.settings import Settings

from .conftest import GPUS, TrackedContainer, compiles, tracked

GPUS_REQUESTED = GPUS is not None


def test_python_is_the_matrix_version(container: TrackedContainer, variant: Variant) -> None:
    assert container.python('import sys; print("%d.%d" % sys.version_info[:2])') == variant.python


def test_package_versions_are_the_matrix_versions(container: TrackedContainer, variant: Variant) -> None:
    code = 'import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in ("torch", "torchvision", "torchaudio")}))'
    assert json.loads(container.python(code)) == {
        "torch": variant.torch,
        "torchvision": variant.torchvision,
        "torchaudio": variant.torchaudio,
    }


def test_torch_cuda_build_is_the_variants(container: TrackedContainer, variant: Variant) -> None:
    found = container.python("import torch; print(torch.version.cuda)")
    assert found == ("None" if not variant.is_cuda else variant.cuda)


def test_cuda_available_only_with_a_visible_gpu(container: TrackedContainer) -> None:
    found = container.python("import torch; print(torch.cuda.is_available())")
    assert found == str(GPUS_REQUESTED)


def test_cudnn_loads(container: TrackedContainer, variant: Variant) -> None:
    version = int(container.python("import torch; print(torch.backends.cudnn.version() or 0)"))
    if not variant.is_cuda:
        assert version == 0
    else:
        assert version >= 8000, f"cuDNN did not load (version {version})"


def test_numpy_is_1x_and_the_bridge_works(container: TrackedContainer) -> None:
    code = "import numpy, torch; a = numpy.arange(3.0); print(numpy.__version__, torch.from_numpy(a).mul(2).numpy().tolist())"
    numpy_version, result = container.python(code).split(" ", 1)
    assert numpy_version.startswith("1.")
    assert result == "[0.0, 2.0, 4.0]"


def test_verify_passes_with_json_report(container: TrackedContainer, variant: Variant) -> None:
    result = container.host.run("verify --json")
    report = json.loads(result.stdout)
    assert result.rc == 0, result.stdout + result.stderr
    assert report["passed"] is True and report["variant"] == variant.name
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert statuses["matmul"] == statuses["packages"] == statuses["cuda build"] == "ok"
    # Without a GPU there is no device to compare with the GPU code; the GPU job runs only
    # the variants whose code its GPU runs.
    assert statuses["gpu arch"] == ("ok" if GPUS_REQUESTED and variant.is_cuda else "skip")
    # torch 2.0 cannot compile on Python 3.11; verify says so instead of failing.
    assert statuses["torch.compile"] == ("ok" if compiles(variant) else "skip")


# Evaluates a checkpoint on the seeded data, with a model rebuilt from the checkpoint's own
# tensors: the untrained model of the same seed starts near ln(4) (4 classes, chance), the
# trained one must be at most half of that.
EVALUATE_CHECKPOINT = """
import json, sys, torch
from torch import nn
from torchenv_app.train import make_dataset
state = torch.load(sys.argv[1], map_location="cpu")
weights = state["model"]
shapes = [weights[f"{i}.weight"].shape for i in (0, 2, 4)]
def model():
    return nn.Sequential(nn.Linear(shapes[0][1], shapes[0][0]), nn.ReLU(), nn.Linear(shapes[1][1], shapes[1][0]), nn.ReLU(),
                         nn.Linear(shapes[2][1], shapes[2][0]))
features, labels = make_dataset(int(sys.argv[2]), state["seed"])
torch.manual_seed(state["seed"])
untrained, trained = model(), model()
trained.load_state_dict(weights)
with torch.no_grad():
    loss = [nn.functional.cross_entropy(m(features), labels).item() for m in (untrained, trained)]
print(json.dumps({"untrained": loss[0], "trained": loss[1], "epochs": len(state["history"])}))
"""


def test_train_loss_falls_and_writes_metrics(container: TrackedContainer) -> None:
    result = container.host.run("train --epochs 4 --out /tmp/demo")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = json.loads(container.host.file("/tmp/demo/metrics.json").content_string)
    assert metrics["device"] == ("cuda" if GPUS_REQUESTED else "cpu")
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2, 3, 4]
    # Not train's own summary: the checkpoint it saved, evaluated on the seeded data.
    container.host.check_output("cat > /tmp/demo/evaluate.py <<'EOF'\n" + EVALUATE_CHECKPOINT + "\nEOF")
    found = json.loads(container.host.check_output(f"python /tmp/demo/evaluate.py /tmp/demo/checkpoint.pt {metrics['samples']}"))
    assert found["epochs"] == 4
    assert abs(found["untrained"] - math.log(4)) < 0.25, found
    assert found["trained"] <= 0.5 * math.log(4), found


def test_gpu_archs_label_is_the_code_compiled_into_torch(container: TrackedContainer, image: str, variant: Variant) -> None:
    """Read from torch in the container, not from the build gate that checked it."""
    compiled = container.python('import torch; print(torch._C._cuda_getArchFlags() if torch.version.cuda else "")')
    label = engine.get().require_image(image).labels[Label.GPU_ARCHS]
    assert label == (" ".join(compiled.split()) or "none")
    assert ("sm_90" in label.split()) == (variant.name in ("cu118", "cu121")), label


@pytest.mark.gpu
@pytest.mark.cuda_only
def test_train_on_the_gpu_with_amp(container: TrackedContainer) -> None:
    result = container.host.run("train --device cuda --amp --epochs 4 --out /tmp/gpu")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = json.loads(container.host.file("/tmp/gpu/metrics.json").content_string)
    assert (metrics["device"], metrics["amp"], metrics["loss_fell"]) == ("cuda", True, True)


def test_runs_as_the_non_root_user(container: TrackedContainer, image: str) -> None:
    assert container.host.check_output("id -u") == "1000"
    assert engine.get().require_image(image).user == "1000:1000"


def test_pip_check_is_clean(container: TrackedContainer) -> None:
    result = container.host.run("python -m pip check")
    assert result.rc == 0, result.stdout


def test_no_installer_cache_or_build_secret_in_the_image(image: str, variant: Variant) -> None:
    """Where the build really mounted them, in the image's own filesystem: uv's cache and the
    CA secret on /tmp (not under the tmpfs a hardened container puts over it), pip's cache,
    /run/secrets. As root, so that no directory is out of find's sight."""
    probe = (
        "set -e; for d in /tmp /run/secrets /root/.cache; do if [ -d $d ]; then find $d -mindepth 1 -print; fi; done; "
        "find / -xdev \\( -name 'ca-bundle*' -o -path '*/.cache/pip' -o -path '*/.cache/uv' -o -name 'pip-*.log' \\) -print"
    )
    assert as_root(image, variant, probe) == []


def test_labels_name_the_lock_and_the_matrix(image: str, variant: Variant, settings: Settings) -> None:
    found = engine.get().require_image(image).labels
    lock = read_lock(variant, settings.lock_dir)
    assert lock is not None, f"{variant.name} has no lock"
    assert found["io.torchenv.lock-sha256"] == hashlib.sha256(lock.path.read_bytes()).hexdigest()
    assert (found["io.torchenv.variant"], found["io.torchenv.torch"], found["io.torchenv.cuda"]) == (
        variant.name,
        variant.torch,
        variant.cuda,
    )
    assert found["io.torchenv.python"] == variant.python and found["org.opencontainers.image.revision"]


def test_image_time_comes_from_the_lock(image: str, variant: Variant, settings: Settings) -> None:
    created = engine.get().require_image(image).created
    lock = read_lock(variant, settings.lock_dir)
    assert lock is not None
    assert datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() == lock.source_date_epoch


@pytest.mark.mmdebstrap_base
def test_image_records_the_base_packages(container: TrackedContainer, variant: Variant) -> None:
    lines = container.host.file("/usr/share/torchenv/base-packages.txt").content_string.splitlines()
    names = {line.split()[0] for line in lines}
    assert {f"python{variant.python}", "g++", "ca-certificates", "libc6"} <= names
    assert all(len(line.split()) == 3 for line in lines)


@pytest.mark.variant_image
def test_tags_are_computed_from_the_image(image: str, variant: Variant, matrix, settings: Settings) -> None:
    """<torch>-<variant>-py<python>-<commit> (on a clean tree), <torch>-<variant>, <variant>,
    latest for the default variant: all on the one image."""
    facts = engine.get().require_image(image)
    tags = set(engine.get().tags_of(facts.id, settings.image_name))
    torch, name = variant.torch_release, variant.local_name
    assert {name, f"{torch}-{name}"} <= tags
    assert ("latest" in tags) == (name == matrix.default_variant)
    full = [tag for tag in tags if tag.startswith(f"{torch}-{name}-py{variant.python}-")]
    # The commit the image says it was built from: a clean one, or none for a dirty tree.
    revision = facts.labels[Label.REVISION]
    commit = None if revision.endswith("-dirty") else revision[:7]
    assert full == ([f"{torch}-{name}-py{variant.python}-{commit}"] if commit else []), tags


def test_image_is_for_the_variants_platform(image: str, variant: Variant, container: TrackedContainer) -> None:
    assert engine.get().require_image(image).platform == variant.platform
    machine = platforms.MACHINES[variant.platform]
    assert container.host.check_output("uname -m") == machine
    assert container.python("import platform; print(platform.machine())") == machine


def as_root(image: str, variant: Variant, script: str) -> list[str]:
    """What SCRIPT prints, run as root with the engine's default capabilities (a hardened
    container's root cannot enter another user's private directories): no directory is out
    of its sight, and its exit status must be 0."""
    result = engine.get().run(image, ["sh", "-c", script], RunOptions(platform=variant.platform, hardened=False, user="0:0"), timeout=300)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_no_setuid_setgid_files(image: str, variant: Variant) -> None:
    found = as_root(image, variant, "find / -xdev -type f -perm /6000 -print")
    assert found == [], f"setuid/setgid files: {found}"


def test_no_world_writable_directory_but_tmp(image: str, variant: Variant) -> None:
    assert as_root(image, variant, "find / -xdev -type d -perm -0002 -print") == ["/tmp"]


# A DataLoader whose batches (768 samples of 32768 float32 features: 96 MB) cannot pass
# through Docker's 64 MB /dev/shm, handed over by one worker process.
BIG_BATCHES = "--features 32768 --samples 3072 --batch-size 768 --epochs 3 --workers 1"


def test_dataloader_workers_need_more_than_dockers_shared_memory(container: TrackedContainer) -> None:
    """In a container with Docker's default /dev/shm: verify warns, naming the flag, and
    train stops in one line with its own exit code instead of a worker's traceback."""
    report = json.loads(container.host.run("verify --json --no-compile").stdout)
    shm = next(check for check in report["checks"] if check["name"] == "shm")
    assert report["shm_bytes"] == 64 * 2**20 and shm["status"] == "warn" and "--shm-size" in shm["detail"]
    result = container.host.run(f"train {BIG_BATCHES} --out /tmp/shm-small")
    assert result.rc == 9, result.stdout + result.stderr
    # torch's worker prints its own line first (and may leave NUL bytes before ours).
    lines = [line for line in result.stderr.splitlines() if "train: error:" in line]
    assert len(lines) == 1 and "/dev/shm (64 MB): run the container with --shm-size" in lines[0], result.stderr


def test_dataloader_workers_train_with_a_real_shared_memory(image: str, variant: Variant) -> None:
    """The same run with --shm-size, as verify advises: the worker's batches pass."""
    script = f"train {BIG_BATCHES} --out /tmp/shm-big > /dev/null && cat /tmp/shm-big/metrics.json"
    options = RunOptions(platform=variant.platform, shm_size="2g")
    result = engine.get().run(image, ["sh", "-c", script], options, timeout=600)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert (metrics["workers"], metrics["features"], metrics["loss_fell"]) == (1, 32768, True)


@pytest.fixture(scope="module")
def arbitrary_uid(image: str, variant: Variant) -> Iterator[TrackedContainer]:
    """The image as Kubernetes and OpenShift run it: an arbitrary UID in group 0 with no
    passwd entry, read-only, /tmp the only writable place (the hardened defaults)."""
    with tracked(image, RunOptions(platform=variant.platform, user="12345:0")) as found:
        yield found


def test_an_arbitrary_uid_without_a_passwd_entry_verifies_and_trains(arbitrary_uid: TrackedContainer, variant: Variant) -> None:
    host = arbitrary_uid.host
    assert host.check_output("id -u") == "12345" and host.run("getent passwd 12345").rc != 0
    assert arbitrary_uid.python("import getpass, os; print(getpass.getuser(), os.path.expanduser(chr(126)))") == "torchenv /home/torchenv"
    verified = host.run("verify --json")
    assert verified.rc == 0, verified.stdout + verified.stderr
    statuses = {check["name"]: check["status"] for check in json.loads(verified.stdout)["checks"]}
    assert statuses["torch.compile"] == ("ok" if compiles(variant) else "skip")
    trained = host.run("train --epochs 3 --out /tmp/anyuid" + (" --compile" if compiles(variant) else ""))
    assert trained.rc == 0, trained.stdout + trained.stderr
    metrics = json.loads(host.file("/tmp/anyuid/metrics.json").content_string)
    assert metrics["compile"] is compiles(variant) and metrics["loss_fell"]


def test_the_users_directories_are_group_0_writable(container: TrackedContainer) -> None:
    for directory in ("/home/torchenv", "/out"):
        owner, group, mode = container.host.check_output(f"stat -c '%u %g %a' {directory}").split()
        assert (owner, group, mode) == ("1000", "0", "775"), directory
