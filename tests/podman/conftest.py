"""Fixtures for the Podman tests: the default variant's image (tests/clusters' fixture) in
rootless Podman, as a user other than root runs it (docs/podman.md).

- The user: `torchenv-podman`, made here when the tests run as root (with a subordinate ID
  range); otherwise the invoking user, who is rootless already.
- Podman's configuration for this session only, handed over with CONTAINERS_CONF and
  CONTAINERS_STORAGE_CONF: nothing on the host is configured, and the user's own files are
  not read. The storage (native overlay) lies in a folder of the user's that is removed
  when these tests end, with the image in it (some 4.5 GB).
- The image pulled once, as that user, from a registry on 127.0.0.1 that torchenv's zstd
  push filled.
- podman-compose, the pinned version from .venv, copied where the user can read it (the
  clone may lie under a home of mode 0700), run with a Python the user may run.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import dotenv
import podman_compose
import pytest
import yaml

from torchenv import PROJECT_ROOT, engine
from torchenv.model.settings import Settings
from torchenv.pipeline import scratch_registry, zstd_push

from ..clusters.conftest import image, matrix, settings, variant
from ..helpers import ZSTD_LEVEL

__all__ = ["image", "matrix", "settings", "variant"]

USER = "torchenv-podman"
# The user's PATH: where podman and the tools it runs live.
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
# What ./invokew installs with podman (scripts/ensure-host.sh).
TOOLS = {
    "podman": "podman",
    "newuidmap": "uidmap",
    "slirp4netns": "slirp4netns",
    "/usr/libexec/podman/catatonit": "catatonit",
    "/usr/lib/podman/netavark": "netavark",
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
}
SUBID_COUNT = 65536


class Timeout(AssertionError):
    pass


def bounded(
    argv: Sequence[str], timeout: float, cwd: Path | None = None, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Runs ARGV in a session of its own; past TIMEOUT seconds the whole process group is
    killed and the test fails with what it printed."""
    with subprocess.Popen(
        list(argv), cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise Timeout(f"{' '.join(argv)} did not end within {timeout:.0f} s:\n{out}{err}") from None
    return subprocess.CompletedProcess(list(argv), process.returncode, out, err)


@dataclass(frozen=True)
class User:
    """The rootless user the tests run Podman as; SWITCH: through runuser (the tests run as root)."""

    name: str
    uid: int
    gid: int
    home: Path
    switch: bool


def subid_ranges(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            entries.append((parts[0], int(parts[1]), int(parts[2])))
    return entries


def has_subids(user: pwd.struct_passwd, path: Path) -> bool:
    return any(owner in (user.pw_name, str(user.pw_uid)) and count >= SUBID_COUNT for owner, _, count in subid_ranges(path))


def ensure_user() -> User:
    """As root: the dedicated user, made when missing (useradd gives it a subordinate ID
    range; one is added when it did not). Otherwise: the invoking user."""
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid())
        for path in (Path("/etc/subuid"), Path("/etc/subgid")):
            if not has_subids(me, path):
                reason = f"{me.pw_name} has no subordinate ID range in {path}: rootless Podman needs one (usermod --add-subuids)"
                pytest.fail(reason, pytrace=False)
        return User(me.pw_name, me.pw_uid, me.pw_gid, Path(me.pw_dir), switch=False)
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "-m", "--shell", "/usr/sbin/nologin", "--comment", "torchenv's Podman tests", USER],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if made.returncode != 0:
            pytest.fail(f"useradd {USER} failed: {made.stderr.strip()}", pytrace=False)
        entry = pwd.getpwnam(USER)
    files = (Path("/etc/subuid"), Path("/etc/subgid"))
    if not all(has_subids(entry, path) for path in files):
        start = max([100000, *(first + count for path in files for _, first, count in subid_ranges(path))])
        span = f"{start}-{start + SUBID_COUNT - 1}"
        subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, USER], check=True, capture_output=True, timeout=30)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), switch=True)


def containers_conf() -> str:
    """This host's own hard limits as the containers' (rootful Podman's defaults, nofile
    1048576, cannot be set without CAP_SYS_RESOURCE); nproc no higher than pid_max, to
    which Podman lowers its own limit when it starts. runc, which copes with a hybrid
    cgroup layout where crun 1.8 does not; netavark, whose internal networks have DNS
    (CNI's have none)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    limits = [f'"nproc={nproc}:{nproc}"']
    if nofile != resource.RLIM_INFINITY:
        limits.insert(0, f'"nofile={nofile}:{nofile}"')
    # cgroupfs and a file for events: nothing rests on a systemd user session or journald,
    # which a user switched to with runuser does not have.
    lines = ["[containers]", f"default_ulimits = [{', '.join(limits)}]", ""]
    lines += ["[engine]", 'cgroup_manager = "cgroupfs"', 'events_logger = "file"']
    if shutil.which("runc", path=PATH):
        lines.append('runtime = "runc"')
    lines += ["", "[network]", 'network_backend = "netavark"', ""]
    return "\n".join(lines)


def storage_conf(folder: Path) -> str:
    """Native overlay (rootless Podman 4.3 picks vfs, a full copy per layer, without a
    storage.conf), in FOLDER (the run root goes to XDG_RUNTIME_DIR)."""
    return f'[storage]\ndriver = "overlay"\nrootless_storage_path = "{folder / "storage"}"\n'


@dataclass
class Podman:
    """Podman of this session, as USER: FOLDER holds its configuration, storage, runtime
    directory and temporary files."""

    user: User
    folder: Path
    python: str = sys.executable
    tool: Path | None = None

    def environment(self) -> dict[str, str]:
        return {
            "PATH": PATH,
            "HOME": str(self.user.home),
            "USER": self.user.name,
            "LOGNAME": self.user.name,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.folder / "run"),
            "TMPDIR": str(self.folder / "tmp"),
            "CONTAINERS_CONF": str(self.folder / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.folder / "storage.conf"),
            **({"PYTHONPATH": str(self.tool)} if self.tool else {}),
        }

    def command(self, *argv: str, env: Mapping[str, str] | None = None) -> list[str]:
        """ARGV as the user, in a clean environment of this session's (and ENV)."""
        clean = ["env", "-i", *(f"{key}={value}" for key, value in {**self.environment(), **(env or {})}.items())]
        return ["runuser", "-u", self.user.name, "--", *clean, *argv] if self.user.switch else [*clean, *argv]

    def __call__(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`podman ARGS` as the user."""
        return bounded(self.command("podman", *args), timeout, cwd=cwd)

    def compose(
        self, project: Path, *args: str, timeout: float = 120, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`podman-compose ARGS` as the user, in PROJECT (with ENV in its environment)."""
        assert self.tool, "podman-compose is not set up"
        return bounded(self.command(self.python, "-m", "podman_compose", *args, env=env), timeout, cwd=project)

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.user.uid, self.user.gid)

    def clean(self) -> None:
        """Every container, pod and network of this session's storage, running or not."""
        self("rm", "--all", "--force", "--time", "0", timeout=120)
        self("pod", "rm", "--all", "--force", timeout=60)
        self("network", "prune", "--force", timeout=60)


def require_tools() -> None:
    found = {tool: Path(tool).exists() if tool.startswith("/") else shutil.which(tool, path=PATH) for tool in TOOLS}
    missing = sorted({package for tool, package in TOOLS.items() if not found[tool]})
    if missing:
        pytest.fail(
            f"not installed: {', '.join(missing)}; run ./invokew test (scripts/ensure-host.sh installs them on Debian)", pytrace=False
        )


def pause_process(folder: Path) -> int | None:
    """Rootless Podman's pause process, which keeps the user namespace for later commands."""
    try:
        return int((folder / "run" / "libpod" / "tmp" / "pause.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pause_process(folder: Path) -> None:
    pause = pause_process(folder)
    if pause:
        try:
            os.kill(pause, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="package")
def podman() -> Iterator[Podman]:
    require_tools()
    user = ensure_user()
    # /var/tmp: on disk (/tmp may be a small tmpfs). The image takes 4.5 GB there, and
    # podman load's temporary copies (TMPDIR) some 13 GB more while it runs.
    folder = Path(tempfile.mkdtemp(prefix="torchenv-podman-", dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    session = Podman(user, folder)
    try:
        for name in ("run", "tmp"):
            (folder / name).mkdir(mode=0o700)
        (folder / "containers.conf").write_text(containers_conf())
        (folder / "storage.conf").write_text(storage_conf(folder))
        if user.switch:
            session.own(folder, *folder.iterdir())
        info = session("info", "--format", "{{.Host.Security.Rootless}} {{.Store.GraphDriverName}} {{.Store.GraphRoot}}")
        assert info.returncode == 0, info.stderr
        assert info.stdout.split() == ["true", "overlay", str(folder / "storage")], info.stdout + info.stderr
        yield session
    finally:
        # Each step on its own (run last to first): one that fails leaves the others to run,
        # so the 4.5 GB of storage goes whatever happened.
        with ExitStack() as cleanup:
            cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
            if user.switch:
                # Podman's locks of the dedicated user, who runs nothing else.
                cleanup.callback(Path(f"/dev/shm/libpod_rootless_lock_{user.uid}").unlink, missing_ok=True)
            cleanup.callback(stop_pause_process, folder)
            if not user.switch:
                # The layers belong to the user's subordinate IDs: only inside its namespace can it remove them.
                cleanup.callback(lambda: bounded(session.command("podman", "unshare", "rm", "-rf", str(folder / "storage")), 300))
            cleanup.callback(session.clean)


@pytest.fixture(scope="package")
def podman_image(podman: Podman, image: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> str:
    """IMAGE as a user's Podman gets it from a registry (docs/podman.md): pushed by torchenv's
    zstd push to a registry on 127.0.0.1, pulled by the user's Podman, named IMAGE there;
    the same image ID. (`docker save | podman load` held some 13 GB of temporary copies on
    top of the storage while it ran: the test run's peak on disk.)"""
    docker = engine.get()
    wanted = docker.image_id(image)
    assert wanted, image
    repository, _, tag = image.rpartition(":")
    with scratch_registry.serving(tmp_path_factory.mktemp("podman-registry"), "the Podman tests") as registry:
        reference = f"{registry.address}/{repository.rpartition('/')[2]}:{tag}"
        zstd_push.push(wanted, [reference], registry.address, settings.work_dir, ZSTD_LEVEL)
        pulled = podman("pull", "--quiet", "--tls-verify=false", reference, timeout=400)
        assert pulled.returncode == 0, f"podman pull of {reference} failed:\n{pulled.stdout[-2000:]}{pulled.stderr[-2000:]}"
    assert pulled.stdout.strip().splitlines()[-1] == wanted.removeprefix("sha256:"), (pulled.stdout, wanted)
    named = podman("tag", reference, image)
    assert named.returncode == 0, named.stderr
    loaded = podman("image", "inspect", "--format", "{{.Id}}", image)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == wanted.removeprefix("sha256:"), (loaded.stdout, wanted)
    return image


def user_python(podman: Podman) -> str:
    """A Python >= 3.9 (podman-compose 1.6.0's) that the user may run: the one under .venv
    (which may lie where the user cannot look), else the machine's python3."""
    candidates = [str(Path(sys.executable).resolve()), shutil.which("python3", path=PATH)]
    for python in filter(None, candidates):
        if bounded(podman.command(python, "-c", "import sys; sys.exit(sys.version_info < (3, 9))"), 30).returncode == 0:
            return python
    tried = ", ".join(filter(None, candidates))
    pytest.fail(f"{podman.user.name} can run none of {tried} (podman-compose needs Python >= 3.9)", pytrace=False)


@pytest.fixture(scope="package")
def compose_tool(podman: Podman) -> Podman:
    """podman-compose (the version .venv pins) and what it imports, where the user can read them."""
    tool = podman.folder / "podman-compose"
    tool.mkdir()
    shutil.copy2(podman_compose.__file__, tool)
    for package in (dotenv, yaml):
        shutil.copytree(Path(package.__file__).parent, tool / package.__name__, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [tool, *tool.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    if podman.user.switch:
        for path in [tool, *tool.rglob("*")]:
            podman.own(path)
    podman.python = user_python(podman)
    podman.tool = tool
    version = podman.compose(podman.folder, "version", timeout=60)
    assert version.returncode == 0 and "podman-compose version 1.6.0" in version.stdout, version.stdout + version.stderr
    return podman


@pytest.fixture
def project(compose_tool: Podman, podman_image: str, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A compose project of the user's: compose.yaml, out/ and the .env for rootless Podman
    (container root is the user, so ./out stays theirs); every container, pod and network
    is removed afterwards, whatever happened."""
    folder = compose_tool.folder / "projects" / request.node.name
    (folder / "out").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "compose.yaml", folder / "compose.yaml")
    (folder / ".env").write_text(f"TORCHENV_UID=0\nTORCHENV_GID=0\nTORCHENV_IMAGE={podman_image}\nTORCHENV_SHM_SIZE=1g\n")
    if compose_tool.user.switch:
        compose_tool.own(folder.parent, folder, *folder.iterdir())
    try:
        yield folder
    finally:
        compose_tool.clean()
