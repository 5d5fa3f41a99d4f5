from pathlib import Path

import pytest

from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import zstd_push
from torchenv.pipeline.zstd_push import host_and_port, is_local, require_reachable

from .fake_engine import FakeEngine


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


@pytest.mark.parametrize(("environ", "level"), [({}, "19"), ({"TORCHENV_ZSTD_LEVEL": "3"}, "3")])
def test_the_push_asks_skopeo_for_zstd_at_the_settings_level(
    environ: dict[str, str], level: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands: list[list[str]] = []
    monkeypatch.setattr(zstd_push, "skopeo", lambda: "skopeo")
    monkeypatch.setattr(zstd_push, "require_reachable", lambda registry, alias: None)
    monkeypatch.setattr(zstd_push, "_run", lambda command, alias, registry: commands.append(command))
    monkeypatch.setattr(Path, "read_text", lambda self: "sha256:feed")
    settings = Settings.load(environ=environ)
    with engine.use(FakeEngine()):
        digest = zstd_push.push("sha256:abc", ["127.0.0.1:5000/torchenv:cu117"], "127.0.0.1:5000", tmp_path, settings.zstd_level)
    assert digest == "sha256:feed"
    first = commands[0]
    assert first[first.index("--dest-compress-format") + 1] == "zstd"
    assert first[first.index("--dest-compress-level") + 1] == level


@pytest.mark.parametrize("value", ["0", "23", "fast"])
def test_a_zstd_level_outside_zstds_is_one_line(value: str) -> None:
    with pytest.raises(TorchenvError, match=r"^setting zstd_level must be (between 1 and 22|a whole number)"):
        Settings.load(environ={"TORCHENV_ZSTD_LEVEL": value})
