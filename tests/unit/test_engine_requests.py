"""The typed requests the engine carries out: the one buildx command line, the hardened
run, GPU requests, and the streamed `docker save` reader."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from torchenv.engine import BuildRequest, RunOptions
from torchenv.engine.docker_engine import ChunkReader, DockerEngine, gpu_request
from torchenv.model import names
from torchenv.model.matrix import load_matrix
from torchenv.model.settings import Settings
from torchenv.pipeline.build import DOCKERFILE, build_request


def test_a_build_request_is_one_buildx_command_line(tmp_path: Path) -> None:
    request = BuildRequest(
        context=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        platform="linux/arm64",
        target="torchenv-base",
        build_args={"A": "1"},
        contexts={"requirements": tmp_path / "req"},
        secrets={"ca-bundle": tmp_path / "ca.pem"},
        labels={"io.torchenv.variant": "cpu"},
        tags=("x:y",),
        no_cache=True,
    )
    command = request.command(tmp_path / "iid")
    assert command[:3] == ["docker", "buildx", "build"] and command[-1] == str(tmp_path)
    pairs = {(command[i], command[i + 1]) for i in range(len(command) - 1)}
    assert {
        ("--iidfile", str(tmp_path / "iid")),
        ("--platform", "linux/arm64"),
        ("--file", str(tmp_path / "Dockerfile")),
        ("--target", "torchenv-base"),
        ("--build-arg", "A=1"),
        ("--build-context", f"requirements={tmp_path / 'req'}"),
        ("--secret", f"id=ca-bundle,src={tmp_path / 'ca.pem'}"),
        ("--label", "io.torchenv.variant=cpu"),
        ("--tag", "x:y"),
        ("--progress", "plain"),
    } <= pairs
    assert "--no-cache" in command


def test_every_variant_build_has_every_dockerfile_arg_and_the_identity_labels(tmp_path: Path) -> None:
    matrix = load_matrix()
    # The variant's stages end where the project's begin.
    variant_stages = DOCKERFILE.read_text().split(f"AS {names.PROJECT_STAGE}")[0]
    declared = {line.split()[1].split("=")[0] for line in variant_stages.splitlines() if line.startswith("ARG ")}
    for variant in matrix.every_build():
        request = build_request(
            variant, Settings(work_dir=tmp_path, pytorch_index="https://mirror.example.test/whl"), "base", base_packages=""
        )
        assert set(request.build_args) == declared and request.target == names.RUNTIME_STAGE
        assert request.labels[names.Label.VARIANT] == variant.name and request.labels[names.Label.CUDA] == variant.cuda
        assert request.labels[names.Label.LOCK_SHA256] and request.platform == variant.platform


def test_the_dockerfile_stages_are_the_named_ones() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M)
    assert tuple(stages) == names.STAGES
    base_dockerfile = (DOCKERFILE.parent / "base" / "Dockerfile").read_text()
    assert re.findall(r"^FROM \S+ AS (\S+)$", base_dockerfile, re.M) == [names.ROOTFS_STAGE]
    assert not re.search(r"^LABEL ", DOCKERFILE.read_text(), re.M), "labels come from the build request (model/names.py)"


def test_a_hardened_run_as_cli_flags_and_as_sdk_arguments() -> None:
    options = RunOptions(platform="linux/arm64", user="1:2", environment={"A": "b"}, volumes={"/h": ("/c", "ro")}, gpus="all")
    flags = options.cli_flags()
    joined = " ".join(flags)
    for expected in ("--network none", "--read-only", "--cap-drop ALL", "--security-opt no-new-privileges", "--tmpfs /tmp:exec,mode=1777"):
        assert expected in joined
    assert "--user 1:2" in joined and "--env A=b" in joined and "--volume /h:/c:ro" in joined and "--gpus all" in joined
    config = DockerEngine()._container_config(options)
    assert config["network_mode"] == "none" and config["read_only"] is True and config["cap_drop"] == ["ALL"]
    assert config["tmpfs"] == {"/tmp": "exec,mode=1777"} and config["security_opt"] == ["no-new-privileges"]
    assert config["volumes"] == {"/h": {"bind": "/c", "mode": "ro"}} and config["platform"] == "linux/arm64"
    assert config["device_requests"][0]["Count"] == -1
    plain = DockerEngine()._container_config(RunOptions(hardened=False))
    assert "network_mode" not in plain and "read_only" not in plain


def test_gpu_requests_as_docker_spells_them() -> None:
    assert gpu_request("all")["Count"] == -1
    assert gpu_request("2")["Count"] == 2
    assert gpu_request("device=0,1")["DeviceIDs"] == ["0", "1"]


def test_a_saved_archive_reads_as_a_stream_from_its_chunks() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"x" * 70_000
        member = tarfile.TarInfo("blobs/sha256/abc")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    raw = buffer.getvalue()
    chunks = [raw[i : i + 777] for i in range(0, len(raw), 777)]
    with tarfile.open(fileobj=io.BufferedReader(ChunkReader(chunks)), mode="r|") as archive:
        found = [(member.name, len(archive.extractfile(member).read())) for member in archive]  # type: ignore[union-attr]
    assert found == [("blobs/sha256/abc", 70_000)]


def test_engine_failures_become_one_line_errors() -> None:
    import docker.errors
    import requests

    from torchenv.engine.docker_engine import DAEMON_DOWN, translated
    from torchenv.errors import TorchenvError

    down = translated(requests.exceptions.ConnectionError("connection refused"), "listing images")
    assert isinstance(down, TorchenvError) and str(down) == " ".join(DAEMON_DOWN.split())
    slow = translated(requests.exceptions.ReadTimeout("read timed out"), "saving x")
    assert str(slow).startswith("saving x failed: the Docker daemon did not answer within")
    said = translated(docker.errors.APIError("500", explanation="no space left on device"), "tagging x")
    assert str(said) == "tagging x failed: no space left on device"
    own = OSError(28, "No space left on device")
    assert translated(own, "saving x") is own, "the caller's own failures stay what they are"


def test_a_device_list_stays_one_field() -> None:
    assert gpu_request('"device=0,1"')["DeviceIDs"] == ["0", "1"]
    assert RunOptions(gpus="device=0,1").cli_flags()[-2:] == ["--gpus", '"device=0,1"']
