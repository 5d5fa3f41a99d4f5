"""A variant may name an upstream base image instead of the mmdebstrap one. No registry
is reachable here, so the "upstream" image is made locally from the Debian base with the
user and g++ taken out; the Dockerfile's base stage must put them back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.engine import BuildRequest, BuildResult, RunOptions
from torchenv.model import names, platforms
from torchenv.model.settings import Settings
from torchenv.pipeline.base import ensure_base
from torchenv.pipeline.build import DOCKERFILE

STRIP = "RUN sed -i '/^torchenv:/d' /etc/passwd /etc/group && rm -rf /home/torchenv && apt-get remove -y -qq g++ >/dev/null\n"


@pytest.fixture(scope="module")
def upstream_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine.get().require()
    base = ensure_base("bookworm", Settings.load())
    name = f"torchenv-test-upstream:{uuid.uuid4().hex[:8]}"
    context = tmp_path_factory.mktemp("upstream")
    (context / "Dockerfile").write_text(f"FROM {base}\n{STRIP}")
    built = engine.get().build(BuildRequest(context=context, platform=platforms.AMD64, tags=(name,)), echo=False)
    assert built.image_id, "\n".join(built.tail[-20:])
    yield name
    engine.get().remove_image(name, force=True)


def build_base_stage(base_image: str, python: str, tag: str) -> BuildResult:
    request = BuildRequest(
        context=PROJECT_ROOT,
        dockerfile=DOCKERFILE,
        target=names.BASE_STAGE,
        platform=platforms.AMD64,
        build_args={"BASE_IMAGE": base_image, "PYTHON_VERSION": python, "BASE_EPOCH": "1700000000"},
        tags=(tag,),
    )
    return engine.get().build(request, echo=False)


def test_upstream_base_gets_compilers_and_the_user(upstream_image: str) -> None:
    tag = f"torchenv-test-adapted:{uuid.uuid4().hex[:8]}"
    try:
        built = build_base_stage(upstream_image, "3.11", tag)
        assert built.image_id, "\n".join(built.tail[-40:])
        probe = engine.get().output_of(tag, ["sh", "-c", "getent passwd 1000 | cut -d: -f1; g++ --version | head -1"], RunOptions())
        user, compiler = probe.splitlines()
        assert user == "torchenv"
        assert compiler.startswith("g++")
    finally:
        engine.get().remove_image(tag, force=True)


def test_upstream_base_with_another_python_is_refused(upstream_image: str) -> None:
    built = build_base_stage(upstream_image, "3.10", f"torchenv-test-refused:{uuid.uuid4().hex[:8]}")
    assert built.returncode != 0 and built.image_id is None
    assert "torchenv: error: the base image's python3 is 3.11, the variant wants 3.10" in "\n".join(built.tail)
