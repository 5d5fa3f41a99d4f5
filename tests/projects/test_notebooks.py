"""examples/notebooks as a user runs it: `docker compose run --service-ports notebook`
serves JupyterLab on 127.0.0.1 only, behind the token the user gives (refused without
it, and never written to its log); a notebook trains the demo headless with a real kernel."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT, engine
from torchenv.model.matrix import Matrix, Variant
from torchenv.model.project import load_project
from torchenv.model.settings import Settings
from torchenv.pipeline.project_build import build_project

from ..helpers import compose_command, compose_run

NOTEBOOKS = PROJECT_ROOT / "examples" / "notebooks"

pytestmark = pytest.mark.needs_variants("cu117")


@pytest.fixture(scope="module")
def notebooks_image(variant: Variant, matrix: Matrix, settings: Settings) -> str:
    return build_project(load_project(NOTEBOOKS), variant, matrix, settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(url: str, token: str | None = None) -> int:
    """The HTTP status of a GET, or 0 while nothing answers (the server still starting)."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.fixture
def served(notebooks_image: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """JupyterLab started the way the README says; yields its address, its token and the
    container's name. The container and the compose network go afterwards."""
    token, port, name = secrets.token_urlsafe(24), free_port(), f"torchenv-test-notebook-{uuid.uuid4().hex[:8]}"
    environment = {"TORCHENV_NOTEBOOK_TOKEN": token, "TORCHENV_NOTEBOOK_PORT": str(port), "TORCHENV_IMAGE": notebooks_image}
    started = compose_command(tmp_path, "--profile", "notebook", "run", "-d", "--service-ports", "--name", name, "notebook", **environment)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while status_of(f"{address}/api/status", token) != 200:
            assert time.monotonic() < deadline, engine.get().client.containers.get(name).logs().decode()[-2000:]
            time.sleep(1)
        yield address, token, name
    finally:
        for container in engine.get().client.containers.list(all=True, filters={"name": name}):
            container.remove(force=True)
        compose_command(tmp_path, "--profile", "notebook", "down", **environment)


def test_jupyterlab_answers_its_token_only_on_loopback_only(served: tuple[str, str, str]) -> None:
    address, token, name = served
    assert status_of(f"{address}/api/contents", token) == 200
    assert status_of(f"{address}/api/contents") == 403
    assert status_of(f"{address}/api/contents", "not-" + token) == 403
    assert status_of(f"{address}/api/kernels") == 403
    container = engine.get().client.containers.get(name)
    published = container.attrs["NetworkSettings"]["Ports"]["8888/tcp"]
    assert published and {binding["HostIp"] for binding in published} == {"127.0.0.1"}
    # Hardened like the other services, and as the invoking user (compose's TORCHENV_UID).
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] and container.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert container.attrs["Config"]["User"].split(":")[0] == str(os.getuid())
    assert token not in container.logs().decode(), "the token reached the server's log"


def test_without_a_token_it_refuses_to_serve_in_one_line(notebooks_image: str, tmp_path: Path) -> None:
    # An empty token, whatever the caller's shell exports.
    environment = {"COMPOSE_PROFILES": "notebook", "TORCHENV_IMAGE": notebooks_image, "TORCHENV_NOTEBOOK_TOKEN": ""}
    refused = compose_run(tmp_path, "--service-ports", "notebook", **environment)
    assert refused.returncode == 2
    assert "notebook: error: no token: set TORCHENV_NOTEBOOK_TOKEN" in refused.stderr


def test_a_notebook_trains_the_demo_headless(notebooks_image: str, tmp_path: Path) -> None:
    command = ["python", "/opt/project/run_notebook.py", "/opt/project/notebooks/train-demo.ipynb", "/out/train-demo.ipynb"]
    ran = compose_run(tmp_path, "notebook", *command, COMPOSE_PROFILES="notebook", TORCHENV_IMAGE=notebooks_image)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    executed = json.loads((tmp_path / "out" / "train-demo.ipynb").read_text())
    code_cells = [cell for cell in executed["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in code_cells), "every cell ran"
    assert not [output for cell in code_cells for output in cell["outputs"] if output["output_type"] == "error"]
    metrics = json.loads((tmp_path / "out" / "notebook" / "metrics.json").read_text())
    assert metrics["final_loss"] < metrics["first_loss"] and len(metrics["epochs"]) == 3
    shown = code_cells[-1]["outputs"][-1]["data"]["text/plain"]
    assert float("".join(shown)) == pytest.approx(metrics["final_loss"])
