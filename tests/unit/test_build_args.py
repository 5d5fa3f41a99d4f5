"""What a build would be given, checked for every variant, including the ones whose
wheels only the PyTorch index serves (cpu, cu118) and that cannot be built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError
from torchenv.locking.wheels import index_url, require_reachable
from torchenv.model.matrix import load_matrix
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.build import build_args, build_request, exclusive_build, requirements_context
from torchenv.pipeline.project_build import project_build_args

MIRROR = "https://mirror.example.test/whl/"


@pytest.fixture
def matrix():
    return load_matrix()


# numpy 1.x and the build tools every variant pins (compat.BUILD_TOOL_PINS).
TOOLS = "numpy<2 setuptools>=64,<70 wheel ninja"


@pytest.mark.parametrize(
    ("name", "index", "pins"),
    [
        ("cpu", MIRROR + "cpu", "torch==2.0.1+cpu torchvision==0.15.2+cpu torchaudio==2.0.2+cpu " + TOOLS),
        ("cu117", "", "torch==2.0.1 torchvision==0.15.2 torchaudio==2.0.2 " + TOOLS),
        ("cu118", MIRROR + "cu118", "torch==2.0.1+cu118 torchvision==0.15.2+cu118 torchaudio==2.0.2+cu118 " + TOOLS),
        ("cu121", "", "torch==2.1.2 torchvision==0.16.2 torchaudio==2.1.2 " + TOOLS + " nvidia-nvjitlink-cu12==12.1.105"),
    ],
)
def test_resolved_build_arguments(matrix, name: str, index: str, pins: str, tmp_path) -> None:
    variant = matrix.get(name)
    settings = Settings(pytorch_index=MIRROR, work_dir=tmp_path)
    args = build_args(variant, settings, "torchenv-base:test")
    assert args["TORCH_INDEX_URL"] == index
    assert args["LOCKED"] == "0"
    assert requirements_context(variant, settings, None).joinpath("requirements.txt").read_text().split() == pins.split()
    assert args["BASE_IMAGE"] == "torchenv-base:test"
    assert args["CUDA_VERSION"] == variant.cuda
    assert args["MIN_DRIVER"] == (variant.min_driver or "")
    assert args["PYTHON_VERSION"] == "3.11"


def test_every_dockerfile_arg_is_resolved(matrix) -> None:
    dockerfile = Path("docker/Dockerfile").read_text()
    declared = {line.split()[1].split("=")[0] for line in dockerfile.splitlines() if line.startswith("ARG ")}
    project = load_project(PROJECT_ROOT / "examples" / "finetune")
    assert declared == set(build_args(matrix.get("cu117"), Settings(), "base")) | set(project_build_args(project))


@pytest.mark.parametrize("name", ["cpu", "cu118"])
def test_pytorch_index_variants_default_to_the_pytorch_index(matrix, name: str) -> None:
    """No setting needed: the address PyTorch's install instructions give."""
    variant = matrix.get(name)
    assert index_url(variant, Settings()) == f"https://download.pytorch.org/whl/{variant.pytorch_channel}"
    assert Settings().pytorch_index_is_default and not Settings(pytorch_index=MIRROR).pytorch_index_is_default
    with pytest.raises(TorchenvError, match=rf"variant {name}: the setting pytorch_index is empty; remove it"):
        index_url(variant, Settings(pytorch_index=""))


def test_only_torch_and_its_companions_come_from_the_pytorch_index(matrix, tmp_path) -> None:
    """Unlocked, the PyTorch index resolves everything (as PyTorch's instructions do);
    locked, only the packages the channel names come from it, the rest from PyPI."""
    variant = matrix.get("cu118")
    settings = Settings(work_dir=tmp_path)
    unlocked = requirements_context(variant, settings, None)
    assert (unlocked / "rest" / "pytorch-index.txt").read_text().split() == variant.requirements
    assert (unlocked / "rest" / "requirements.txt").read_text() == ""
    pypi = requirements_context(matrix.get("cu117"), settings, None)
    assert (pypi / "rest" / "pytorch-index.txt").read_text() == ""


@pytest.mark.parametrize(
    ("index", "network"),
    [("http://127.0.0.1:8000/whl", "host"), ("http://localhost:8000/whl", "host"), ("http://[::1]:8000/whl", "host"), (MIRROR, None)],
)
def test_a_mirror_on_loopback_is_reached_over_the_hosts_network(matrix, tmp_path, index: str, network: str | None) -> None:
    request = build_request(matrix.get("cu118"), Settings(pytorch_index=index, work_dir=tmp_path), "base", base_packages="")
    assert request.network == network
    command = request.command(tmp_path / "iid")
    assert (command[command.index("--network") + 1] if "--network" in command else None) == network
    assert build_request(matrix.get("cu117"), Settings(pytorch_index=index, work_dir=tmp_path), "base", base_packages="").network is None


def test_unreachable_index_is_one_line(matrix) -> None:
    settings = Settings(pytorch_index="http://127.0.0.1:9/whl")
    with pytest.raises(
        TorchenvError, match=r"variant cpu: the PyTorch cpu index could not be reached at http://127.0.0.1:9/whl/cpu/torch/"
    ) as caught:
        require_reachable(matrix.get("cpu"), settings, timeout=5)
    assert "\n" not in str(caught.value)


def test_ca_bundle_goes_in_as_a_secret_never_a_build_arg(matrix, tmp_path) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    request = build_request(matrix.get("cu117"), Settings(ca_bundle=str(bundle), work_dir=tmp_path), "base", base_packages="")
    command = request.command(tmp_path / "iid")
    assert command[command.index("--secret") + 1] == f"id=ca-bundle,src={bundle}"
    assert not any(str(bundle) in part for part in command if part.startswith(("SOURCE", "REQ", "TORCH", "BASE")))


def test_missing_ca_bundle_is_one_line(matrix, tmp_path) -> None:
    with pytest.raises(TorchenvError, match=r"CA bundle .* does not exist"):
        Settings(ca_bundle=str(tmp_path / "missing.pem")).ca_bundle_path()


def test_settings_from_environment_and_invoke_config() -> None:
    settings = Settings.load({"image_name": "mine"}, environ={"TORCHENV_PYTORCH_INDEX": MIRROR, "TORCHENV_IMAGE_NAME": "env"})
    assert settings.pytorch_index == MIRROR
    assert settings.image_name == "mine"
    # A variable defined but empty (an unset CI variable) leaves the default.
    assert Settings.load(environ={"TORCHENV_PYTORCH_INDEX": ""}).pytorch_index == "https://download.pytorch.org/whl"
    with pytest.raises(TorchenvError, match="unknown torchenv setting 'colour'"):
        Settings.load({"colour": "blue"}, environ={})


@pytest.mark.parametrize(
    ("overrides", "environ", "said"),
    [
        # invoke.yaml's values of the wrong type (issue 35): one line each, never a traceback or a silent default.
        ({"zstd_level": [1]}, {}, "setting zstd_level must be a whole number, got [1]"),
        ({"zstd_level": 3.7}, {}, "setting zstd_level must be a whole number, got 3.7"),
        ({"zstd_level": True}, {}, "setting zstd_level must be a whole number, got True"),
        ({"matrix": 5}, {}, "setting matrix must be a path, got 5"),
        ({"min_free_gb": {"a": 1}}, {}, "setting min_free_gb must be a number, got {'a': 1}"),
        ({"min_free_gb": "nan"}, {}, "setting min_free_gb must be a number, got 'nan'"),
        ({"min_free_gb": -5}, {}, "setting min_free_gb must be a number of GB, 0 or more"),
        ({"pytorch_index": 5}, {}, "setting pytorch_index must be text, got 5"),
        ({"ca_bundle": 5}, {}, "setting ca_bundle must be text, got 5"),
        ({}, {"TORCHENV_SIGN_KEYLESS": "ture"}, "setting sign_keyless must be true or false"),
        ({}, {"TORCHENV_ZSTD_LEVEL": "9" * 30}, "setting zstd_level must be a whole number"),
    ],
)
def test_a_setting_of_the_wrong_type_or_range_is_one_line(overrides, environ, said: str) -> None:
    with pytest.raises(TorchenvError) as raised:
        Settings.load(overrides, environ=environ)
    assert str(raised.value).startswith(said) and "\n" not in str(raised.value), str(raised.value)


def test_settings_spelled_as_a_user_would_are_read() -> None:
    settings = Settings.load({"shm_size": 2**30, "min_free_gb": 12, "debian_snapshot": "Yes"}, environ={"TORCHENV_SIGN_KEYLESS": "off"})
    assert (settings.shm_size, settings.min_free_gb, settings.debian_snapshot, settings.sign_keyless) == (str(2**30), 12.0, True, False)


def test_a_second_build_of_the_same_variant_refuses(matrix, tmp_path) -> None:
    settings = Settings(work_dir=tmp_path)
    with exclusive_build(matrix.get("cu117"), settings):
        with pytest.raises(TorchenvError, match="another build of cu117 is running on this machine; wait for it"):
            with exclusive_build(matrix.get("cu117"), settings):
                pass
        with exclusive_build(matrix.get("cu121"), settings):  # other variants are not held up
            pass


def test_a_private_mirrors_credentials_reach_neither_the_build_arguments_nor_an_error(matrix, tmp_path) -> None:
    """Build arguments are in the image's history: the credentials go in as a secret netrc."""
    settings = Settings(pytorch_index="https://alice:s3cr%40t@mirror.example.test/whl", work_dir=tmp_path)
    request = build_request(matrix.get("cu118"), settings, "base", base_packages="")
    assert request.build_args["TORCH_INDEX_URL"] == "https://mirror.example.test/whl/cu118"
    assert "s3cr" not in " ".join(request.command(tmp_path / "iid"))
    netrc = request.secrets["index-netrc"]
    assert netrc.read_text() == "machine mirror.example.test login alice password s3cr@t\n"
    assert netrc.stat().st_mode & 0o077 == 0
    with pytest.raises(TorchenvError) as caught:
        require_reachable(matrix.get("cu118"), Settings(pytorch_index="http://alice:s3cret@127.0.0.1:9/whl"), timeout=5)
    assert "s3cret" not in str(caught.value) and "http://127.0.0.1:9/whl/cu118/torch/" in str(caught.value)
