import json
from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import zstd_push
from torchenv.pipeline.zstd_push import host_and_port, is_local, require_reachable

from .fake_engine import FakeEngine
from .zstd_images import Image, layer


@pytest.mark.parametrize(
    ("registry", "expected", "local"),
    [
        ("ghcr.io/owner", ("ghcr.io", None), False),
        ("registry.example:5000/team/sub", ("registry.example", 5000), False),
        ("127.0.0.1:5000", ("127.0.0.1", 5000), True),
        ("localhost:5000", ("localhost", 5000), True),
        ("[::1]:5000", ("::1", 5000), True),
    ],
)
def test_a_registry_names_its_host_port_and_whether_it_is_local(registry: str, expected: tuple[str, int | None], local: bool) -> None:
    assert host_and_port(registry) == expected
    assert is_local(registry) is local


def test_nothing_listening_fails_in_one_line_before_any_save() -> None:
    with pytest.raises(TorchenvError, match=r"^pushing 127\.0\.0\.1:1/torchenv:x failed: cannot connect to 127\.0\.0\.1:1 \(") as caught:
        require_reachable("127.0.0.1:1", "127.0.0.1:1/torchenv:x")
    assert "\n" not in str(caught.value)


def skopeo_that_stores(monkeypatch: pytest.MonkeyPatch, digest: str | None = None) -> list[list[str]]:
    """skopeo faked at its command line: it records the digest of the layout's manifest
    (or DIGEST, a registry that rewrote it) where --digestfile says."""
    commands: list[list[str]] = []

    def run(command: list[str], alias: str, registry: str) -> None:
        commands.append(command)
        if "--digestfile" in command:
            layout = Path(command[-2].split(":")[1])
            stored = digest or json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
            Path(command[command.index("--digestfile") + 1]).write_text(stored)

    monkeypatch.setattr(zstd_push, "skopeo", lambda: "skopeo")
    monkeypatch.setattr(zstd_push, "require_reachable", lambda registry, alias: None)
    monkeypatch.setattr(zstd_push, "_run", run)
    return commands


def fake_with(image: Image) -> FakeEngine:
    docker = FakeEngine()
    docker.images[image.id] = image.facts()
    docker.archives[image.id] = image.archive()
    return docker


def test_skopeo_uploads_torchenvs_layout_as_it_is_then_copies_the_other_tags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands = skopeo_that_stores(monkeypatch)
    image = Image([layer({"a": b"a" * 1000})])
    seen: list[str] = []
    aliases = ["127.0.0.1:5000/torchenv:2.0.1-cu117-py3.11-abc", "127.0.0.1:5000/torchenv:cu117"]
    with engine.use(fake_with(image)):
        digest = zstd_push.push(image.id, aliases, "127.0.0.1:5000", tmp_path, Settings.load(environ={}).zstd_level, seen.append)
    upload, copy = commands
    assert upload[-1] == f"docker://{aliases[0]}"
    assert upload[-2].startswith("oci:") and upload[-2].endswith(":image")
    assert "--dest-compress-format" not in upload, "skopeo must not compress again: torchenv did, deterministically"
    assert "--preserve-digests" in upload and "--dest-tls-verify=false" in upload
    assert seen == [digest] and digest.startswith("sha256:")
    assert copy[-2:] == [f"docker://{aliases[0]}", f"docker://{aliases[1]}"]
    assert list(tmp_path.glob("push-*")) == [], "the layout is removed after the push"


def test_a_registry_that_stores_another_digest_fails_in_one_line_before_any_tag_moves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands = skopeo_that_stores(monkeypatch, digest="sha256:" + "e" * 64)
    image = Image([layer({"a": b"a"})])
    with (
        engine.use(fake_with(image)),
        pytest.raises(TorchenvError, match=r"^pushing r:5000/t:x \(zstd\) stored manifest sha256:e+, not the sha256:\w+ torchenv wrote; "),
    ):
        zstd_push.push(image.id, ["r:5000/t:x", "r:5000/t:y"], "r:5000", tmp_path, 3)
    assert len(commands) == 1


@pytest.mark.parametrize("value", ["0", "23", "fast"])
def test_a_zstd_level_outside_zstds_is_one_line(value: str) -> None:
    with pytest.raises(TorchenvError, match=r"^setting zstd_level must be (between 1 and 22|a whole number)"):
        Settings.load(environ={"TORCHENV_ZSTD_LEVEL": value})
