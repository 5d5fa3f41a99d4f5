"""Where the in-image app points torch's compiled-code caches, and the refusal where no
writable place can load compiled code (docker/app/torchenv_app/codecache.py; the image
tests run it for real on a noexec tmpfs)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "docker" / "app"))
from torchenv_app import codecache


def places(usable: set[str]):
    def examine(path: str) -> codecache.Place:
        ok = any(path == place or path.startswith(place + "/") for place in usable)
        return codecache.Place(path, writable=True, executable=ok)

    return examine


def test_usable_caches_stay_where_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecache, "examine", places({"/tmp"}))
    environ = {"TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor", "HOME": "/home/u"}
    assert codecache.prepare(environ) is None
    assert environ == {"TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor", "HOME": "/home/u"}


def test_caches_on_a_noexec_tmp_move_to_the_first_usable_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecache, "examine", places({"/home/u"}))
    environ = {"TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor", "HOME": "/home/u"}
    assert codecache.prepare(environ) is None
    assert {name: environ[name] for name in codecache.CACHES} == {
        "TORCHINDUCTOR_CACHE_DIR": "/home/u/.torchenv-cache/torchinductor",
        "TRITON_CACHE_DIR": "/home/u/.torchenv-cache/triton",
        "TORCH_EXTENSIONS_DIR": "/home/u/.torchenv-cache/torch_extensions",
    }


def test_no_usable_place_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecache, "examine", places(set()))
    environ = {"HOME": "/home/u"}
    problem = codecache.prepare(environ)
    assert problem is not None and "\n" not in problem
    assert "--tmpfs /tmp:exec" in problem and "/tmp/torchinductor is on a noexec mount" in problem
    assert "HOME" in environ and "TORCH_EXTENSIONS_DIR" not in environ  # nothing moved


def test_examine_reads_the_mount_of_the_nearest_existing_folder(tmp_path: Path) -> None:
    place = codecache.examine(str(tmp_path / "not" / "yet"))
    assert place.writable and place.path.endswith("/not/yet")


def test_a_folder_it_may_not_look_into_is_unusable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path: str) -> Path:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(codecache, "existing_ancestor", denied)
    assert codecache.examine("/tmp/private/x") == codecache.Place("/tmp/private/x", False, False)


def test_a_refused_load_goes_ahead_once_the_program_gives_an_exec_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    load = codecache.refusing(lambda *args, **kwargs: calls.append(kwargs) or "built", "no place")
    monkeypatch.setattr(codecache, "examine", places({"/exec"}))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/tmp/torch_extensions")
    with pytest.raises(codecache.CompiledCodeUnloadable, match=r"^no place$"):
        load("x")
    assert load("x", build_directory="/exec/build") == "built" and calls == [{"build_directory": "/exec/build"}]


def test_extension_loads_refuse_and_an_uncaught_refusal_is_one_line(tmp_path: Path) -> None:
    """A stand-in torch.utils.cpp_extension, imported through the hook in a fresh Python."""
    package = tmp_path / "torch" / "utils"
    package.mkdir(parents=True)
    (tmp_path / "torch" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "cpp_extension.py").write_text("def load_inline(*args, **kwargs):\n    return 'built'\n")
    program = textwrap.dedent(
        """
        import sys
        from torchenv_app import codecache
        codecache.prepare = lambda environ=None: "no place: use --tmpfs /tmp:exec"  # as on a noexec /tmp
        sys.meta_path.insert(0, codecache.RefuseExtensionLoads("no place: use --tmpfs /tmp:exec"))
        sys.excepthook = codecache.one_line_hook(sys.excepthook)
        from torch.utils.cpp_extension import load_inline
        try:
            load_inline("x")
        except RuntimeError as error:
            print("caught:", error)
        load_inline("x")
        """
    )
    path = f"{tmp_path}:{PROJECT_ROOT / 'docker' / 'app'}"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env={"PYTHONPATH": path}, check=False)
    assert result.stdout == "caught: no place: use --tmpfs /tmp:exec\n"
    assert result.returncode == 1 and result.stderr == "torchenv: error: no place: use --tmpfs /tmp:exec\n"
