from pathlib import Path

from torchenv.locking.layering import split_requirements

LOCK = Path(__file__).resolve().parents[2] / "images" / "locks" / "cu117.txt"


def test_a_lock_splits_into_the_nvidia_libraries_and_the_rest_with_every_hash() -> None:
    text = LOCK.read_text()
    parts = split_requirements(text)
    assert parts["nvidia"].startswith("nvidia-") and "\nnvidia-cudnn-cu11==" in parts["nvidia"]
    # The venv's seeded setuptools is replaced in the venv's own layer: no whiteouts later.
    assert "\nsetuptools==" in parts["nvidia"] and "setuptools==" not in parts["rest"]
    assert "\ntorch==2.0.1 " in parts["rest"] and "nvidia-" not in "".join(
        line for line in parts["rest"].splitlines() if not line.lstrip().startswith("#")
    )
    # Nothing is lost or doubled: every hash line lands in exactly one part, and the
    # header (which names torch's version) in none.
    hashes = [line.strip() for line in text.splitlines() if "--hash=" in line]
    assert sorted(line.strip() for part in parts.values() for line in part.splitlines() if "--hash=" in line) == sorted(hashes)
    assert "# requirements:" not in parts["nvidia"] + parts["rest"]


def test_a_requirement_keeps_its_continuations_and_comments() -> None:
    text = "# header\nNvidia_cublas-cu11==1 \\\n    --hash=sha256:aa\n    # via torch\ntorch==2 \\\n    --hash=sha256:bb\n"
    parts = split_requirements(text)
    assert parts == {
        "nvidia": "Nvidia_cublas-cu11==1 \\\n    --hash=sha256:aa\n    # via torch\n",
        "rest": "torch==2 \\\n    --hash=sha256:bb\n",
        "pytorch-index": "",
    }


def test_the_packages_of_a_pytorch_channel_go_to_their_own_part() -> None:
    filelock = "filelock==3 \\\n    --hash=sha256:cc\n"
    torch = "torch==2+cu118 \\\n    --hash=sha256:bb\n    # via torchvision\n"
    torchvision = "torchvision==1+cu118 \\\n    --hash=sha256:dd\n"
    parts = split_requirements(filelock + torch + torchvision, frozenset({"torch", "torchvision", "torchaudio"}))
    assert parts == {"nvidia": "", "rest": filelock, "pytorch-index": torch + torchvision}


def test_the_build_installer_is_the_uv_the_host_tools_use() -> None:
    """Locks are made with the host's uv; builds install them with the same version."""
    root = LOCK.parents[2]
    pin = [line.split()[0] for line in (root / "requirements-dev.txt").read_text().splitlines() if line.startswith("uv==")]
    installer = (root / "docker" / "installer" / "requirements.txt").read_text()
    assert pin and installer.count("--hash=sha256:") >= 2 and f"\n{pin[0]} \\" in installer
