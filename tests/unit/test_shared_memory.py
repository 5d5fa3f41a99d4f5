"""The /dev/shm torchenv gives the containers it runs and compose's services."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model.settings import Settings
from torchenv.pipeline import compose


def test_the_default_is_half_the_memory_between_1_and_16_gb() -> None:
    size = Settings.load(environ={}).container_shm_size()
    assert size.endswith("g") and 1 <= int(size[:-1]) <= 16


@pytest.mark.parametrize(("value", "size"), [("8g", 8 * 2**30), ("512m", 512 * 2**20), ("4096k", 4096 * 2**10)])
def test_a_set_size_is_taken_as_docker_reads_it(value: str, size: int) -> None:
    settings = Settings.load(environ={"TORCHENV_SHM_SIZE": value})
    assert (settings.container_shm_size(), settings.container_shm_size_bytes()) == (value, size)
    assert RunOptions(shm_size=settings.container_shm_size()).cli_flags()[-2:] == ["--shm-size", value]


def test_a_size_docker_cannot_read_is_one_line() -> None:
    with pytest.raises(TorchenvError, match=r'^setting shm_size must be a size like "8g" or "512m", got \'lots\'$'):
        Settings.load(environ={"TORCHENV_SHM_SIZE": "lots"})


def test_compose_env_file_carries_the_size_and_keeps_the_users_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHENV_SHM_SIZE", "6g")
    env_file = tmp_path / ".env"
    env_file.write_text("TORCHENV_VARIANT=cu121\nTORCHENV_SHM_SIZE=1g\n")
    compose.prepare(env_file=env_file, out_dir=tmp_path / "out")
    lines = env_file.read_text().splitlines()
    assert "TORCHENV_VARIANT=cu121" in lines and "TORCHENV_SHM_SIZE=6g" in lines and "TORCHENV_SHM_SIZE=1g" not in lines


def test_a_number_from_invoke_yaml_is_a_size_in_bytes() -> None:
    settings = Settings.load(overrides={"shm_size": 8589934592})
    assert settings.container_shm_size_bytes() == 8 * 2**30
