"""The only place torchenv talks to Docker. Everything the Docker SDK for Python can do
goes through it; BuildKit builds, `buildx imagetools` and compose, which the SDK does
not cover, run the docker CLI from here. Failures become one-line TorchenvErrors."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import docker.types
import requests

from torchenv.engine.requests import BuildRequest, BuildResult, CacheRecord, ImageFacts, RunOptions, RunResult
from torchenv.errors import TorchenvError

DAEMON_DOWN = (
    "the Docker daemon does not answer on /var/run/docker.sock (or DOCKER_HOST); "
    "start it (./invokew starts it, or `sudo systemctl start docker`) and retry"
)
# "#8 12.34 text" -> "text"
STEP_PREFIX = re.compile(r"^#\d+ (?:\d+\.\d+ )?")
KEEP_LINES = 400
# Long enough for a pull or push of a gigabyte layer between two progress messages.
HTTP_TIMEOUT_S = 600


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def api_reason(error: Exception) -> str:
    """An SDK error as its one line: the daemon's explanation where it gave one."""
    explanation = getattr(error, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else explanation
    return last_line(str(text or error))


class DockerEngine:
    """Docker Engine through its API (the SDK) and, for BuildKit, compose and imagetools, its CLI."""

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None

    # --- the daemon ----------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=HTTP_TIMEOUT_S)
            except docker.errors.DockerException:
                raise TorchenvError(DAEMON_DOWN) from None
        return self._client

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """SDK failures as one line naming what was being done."""
        try:
            yield
        except TorchenvError:
            raise
        except Exception as error:
            raise translated(error, doing) from None

    def require(self) -> None:
        """Fails in one line unless the daemon answers and buildx is there."""
        try:
            self.client.ping()
        except (docker.errors.DockerException, OSError):
            raise TorchenvError(DAEMON_DOWN) from None
        if self._cli("buildx", "version").returncode != 0:
            raise TorchenvError("docker buildx is missing; install the docker-buildx package (./invokew does) and retry")

    def info(self) -> dict[str, Any]:
        with self._translated("asking the Docker daemon for its info"):
            return self.client.info()

    def data_root(self) -> Path | None:
        """Docker's data root, where it is on this machine (a remote engine's is not)."""
        root = self.info().get("DockerRootDir", "")
        return Path(root) if root and Path(root).exists() else None

    # --- images --------------------------------------------------------------------

    def image(self, reference: str) -> ImageFacts | None:
        try:
            attrs = self.client.api.inspect_image(reference)
        except docker.errors.NotFound:
            return None
        except Exception as error:
            raise translated(error, f"inspecting {reference}") from None
        config = attrs.get("Config") or {}
        return ImageFacts(
            id=attrs["Id"],
            tags=tuple(attrs.get("RepoTags") or ()),
            labels=dict(config.get("Labels") or {}),
            layers=tuple((attrs.get("RootFS") or {}).get("Layers") or ()),
            user=config.get("User") or "",
            created=attrs.get("Created", ""),
            os=attrs.get("Os", ""),
            architecture=attrs.get("Architecture", ""),
            size=int(attrs.get("Size") or 0),
            repo_digests=tuple(attrs.get("RepoDigests") or ()),
            config=config,
        )

    def image_id(self, reference: str) -> str | None:
        facts = self.image(reference)
        return facts.id if facts else None

    def require_image(self, reference: str) -> ImageFacts:
        facts = self.image(reference)
        if facts is None:
            raise TorchenvError(f"no image {reference} in the engine; build or pull it first")
        return facts

    def image_ids(self, filters: Mapping[str, str | list[str]]) -> set[str]:
        """IDs of the images that match every filter (`docker image ls --filter`), untagged ones included."""
        with self._translated("listing images"):
            return {image["Id"] for image in self.client.api.images(all=True, filters=dict(filters))}

    def references(self, repository: str | None = None) -> set[str]:
        """repository:tag@id of every tagged image (of one repository), and <none>@id of the others."""
        with self._translated("listing images"):
            listed = self.client.api.images(name=repository, all=repository is None)
        found = set()
        for image in listed:
            for tag in image.get("RepoTags") or ["<none>:<none>"]:
                found.add(f"{tag}@{image['Id']}")
        return found

    def tags_of(self, image_id: str, repository: str) -> list[str]:
        """The tags (without repository) under which REPOSITORY holds IMAGE_ID."""
        facts = self.image(image_id)
        if facts is None:
            return []
        return sorted(tag.rsplit(":", 1)[1] for tag in facts.tags if tag.rsplit(":", 1)[0] == repository)

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        if "/" in tag or not repository:
            repository, tag = target, "latest"
        with self._translated(f"tagging {target}"):
            self.client.api.tag(source, repository, tag)

    def remove_image(self, reference: str, force: bool = False) -> bool:
        """Removes an image (or one tag of it); False when there was none."""
        try:
            self.client.api.remove_image(reference, force=force)
            return True
        except docker.errors.NotFound:
            return False
        except Exception as error:
            raise translated(error, f"removing {reference}") from None

    def history(self, reference: str) -> list[tuple[str, int]]:
        """(the step that made it, size in bytes) of each history entry, newest first."""
        with self._translated(f"reading the history of {reference}"):
            return [(entry.get("CreatedBy", ""), int(entry.get("Size") or 0)) for entry in self.client.api.history(reference)]

    def push(self, reference: str) -> str:
        """Pushes REFERENCE (repository:tag, credentials from `docker login`); returns the
        manifest digest the registry gave it."""
        repository, _, tag = reference.rpartition(":")
        digest = ""
        with self._translated(f"pushing {reference}"):
            for event in self.client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise TorchenvError(f"pushing {reference} failed: {last_line(detail)}")
                if aux := event.get("aux"):
                    digest = aux.get("Digest", digest)
        if not digest:
            raise TorchenvError(f"pushing {reference} failed: the registry gave no digest")
        return digest

    def pull(self, reference: str, platform: str | None = None) -> str:
        """Pulls REFERENCE (repository:tag or repository@digest); returns the image ID."""
        with self._translated(f"pulling {reference}"):
            for event in self.client.api.pull(reference, platform=platform, stream=True, decode=True):
                if "error" in event:
                    detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                    raise TorchenvError(f"pulling {reference} failed: {last_line(detail)}")
        image_id = self.image_id(reference)
        if image_id is None:
            raise TorchenvError(f"pulling {reference} failed: the engine has no such image afterwards")
        return image_id

    @contextmanager
    def saved(self, reference: str) -> Iterator[IO[bytes]]:
        """The `docker save` archive of REFERENCE as a stream, read as it comes and closed when
        the block ends. The engine's failures while reading are one-line errors; the caller's
        own (a full disk, say) stay what they are."""
        with self._translated(f"saving {reference}"):
            chunks = self.client.api.get_image(reference, chunk_size=1 << 20)
        try:
            yield io.BufferedReader(ChunkReader(chunks, f"saving {reference}"), 1 << 20)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()

    # --- the build cache -------------------------------------------------------------

    def build_cache(self) -> list[CacheRecord]:
        with self._translated("listing the build cache"):
            records = self.client.api.df().get("BuildCache") or []
        return [CacheRecord(record["ID"], record.get("Description", ""), bool(record.get("InUse"))) for record in records]

    def build_cache_ids(self, mentioning: str = "") -> list[str]:
        """IDs of BuildKit cache records whose description mentions a word."""
        return [record.id for record in self.build_cache() if mentioning in record.description]

    def build_records_since(self, before: set[str]) -> set[str]:
        """Build cache records made since BEFORE (a set of IDs), but not cache mounts: those get a
        new record each time a step uses them, and hold the downloads later builds reuse."""
        records = self.build_cache()
        return {record.id for record in records if record.id not in before and "cached mount " not in record.description}

    def prune_build_cache(self, record_id: str | None = None) -> None:
        """Prunes one record (a record still in use is left alone), or every unused one."""
        filters = {"id": [record_id]} if record_id else None
        with self._translated("pruning the build cache"):
            self.client.api.prune_builds(filters=filters, all=record_id is not None or None)

    # --- BuildKit --------------------------------------------------------------------

    def build(self, request: BuildRequest, echo: bool = True) -> BuildResult:
        """Runs the build, echoing BuildKit's output to stderr (unless ECHO is off)."""
        self._require_cli()
        with tempfile.TemporaryDirectory(prefix="torchenv-build-") as scratch:
            iidfile = Path(scratch) / "iid"
            tail: deque[str] = deque(maxlen=KEEP_LINES)
            command = request.command(iidfile)
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
                assert process.stdout is not None
                for line in process.stdout:
                    if echo:
                        sys.stderr.write(line)
                    tail.append(STEP_PREFIX.sub("", line.rstrip("\n")))
            image_id = iidfile.read_text().strip() if process.returncode == 0 and iidfile.exists() else None
        return BuildResult(process.returncode, image_id, tuple(tail))

    def builder_versions(self) -> tuple[str, str]:
        """(BuildKit's version as the builder reports it, the engine's version), for provenance."""
        self._require_cli()
        inspected = self._cli("buildx", "inspect").stdout
        buildkit = next((line.split(":", 1)[1].strip() for line in inspected.splitlines() if line.startswith("BuildKit version:")), "")
        return buildkit or "unknown", str(self.info().get("ServerVersion", "unknown"))

    def imagetools_create(self, target: str, sources: Sequence[str]) -> None:
        result = self._cli("buildx", "imagetools", "create", "--tag", target, *sources)
        if result.returncode != 0:
            raise TorchenvError(f"making the multi-platform index {target} failed: {last_line(result.stderr)}")

    def imagetools_manifest(self, reference: str) -> dict[str, Any]:
        """The registry's manifest (or index) for REFERENCE: its digest, media type, and the platforms an index lists."""
        result = self._cli("buildx", "imagetools", "inspect", reference, "--format", "{{json .Manifest}}")
        if result.returncode != 0:
            raise TorchenvError(f"reading the manifest of {reference} failed: {last_line(result.stderr)}")
        return json.loads(result.stdout)

    # --- containers ----------------------------------------------------------------

    def _container_config(self, options: RunOptions) -> dict[str, Any]:
        config: dict[str, Any] = {
            "user": options.user,
            "environment": dict(options.environment) or None,
            "volumes": {host: {"bind": inside, "mode": mode} for host, (inside, mode) in options.volumes.items()} or None,
            "labels": dict(options.labels) or None,
            "name": options.name,
            "platform": options.platform,
        }
        if options.entrypoint:
            config["entrypoint"] = options.entrypoint
        if options.privileged:
            config["privileged"] = True
        if options.shm_size:
            config["shm_size"] = options.shm_size
        if options.hardened:
            config |= {
                "network_mode": "none",
                "read_only": True,
                "tmpfs": dict(options.tmpfs),
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges"],
            }
        if options.gpus:
            config["device_requests"] = [gpu_request(options.gpus)]
        return {key: value for key, value in config.items() if value is not None}

    def run(
        self, image: str, command: Sequence[str], options: RunOptions | None = None, echo: bool = False, timeout: float | None = None
    ) -> RunResult:
        """Runs COMMAND in a throwaway container and waits for it (at most TIMEOUT seconds);
        ECHO streams its output to stderr as it comes. The container is removed whatever happens."""
        with self._translated(f"running `{' '.join(command)[:60]}` in {image[:40]}"):
            config = self._container_config(options or RunOptions())
            container = self.client.containers.create(image, list(command), detach=True, **config)
            try:
                container.start()
                if echo:
                    for chunk in container.logs(stream=True, follow=True):
                        sys.stderr.write(chunk.decode(errors="replace"))
                        sys.stderr.flush()
                try:
                    exit_code = int(container.wait(timeout=timeout)["StatusCode"])
                except requests.exceptions.ConnectionError:  # the wait's read timed out
                    raise TorchenvError(f"`{' '.join(command)[:60]}` did not finish within {timeout} s in {image[:40]}") from None
                stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
                stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
                output = container.logs().decode(errors="replace")
            finally:
                container.remove(force=True)
        return RunResult(exit_code, output, stdout, stderr)

    def output_of(self, image: str, command: Sequence[str], options: RunOptions | None = None) -> str:
        """COMMAND's standard output; a non-zero exit fails in one line."""
        result = self.run(image, command, options)
        if result.exit_code != 0:
            reason = last_line(result.stderr) or last_line(result.stdout)
            raise TorchenvError(f"`{' '.join(command)}` failed in {image[:40]} (exit {result.exit_code}): {reason}")
        return result.stdout

    def start(self, image: str, command: Sequence[str], options: RunOptions | None = None) -> str:
        """Starts a detached container; returns its ID. The caller removes it (remove_container);
        a container that fails to start is removed here."""
        with self._translated(f"starting a container of {image[:40]}"):
            container = self.client.containers.create(image, list(command), detach=True, **self._container_config(options or RunOptions()))
            try:
                container.start()
            except BaseException:
                container.remove(force=True)
                raise
        return str(container.id)

    def remove_container(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as error:
            raise translated(error, f"removing container {container_id[:12]}") from None

    def run_interactive(self, image: str, command: Sequence[str], options: RunOptions, tty: bool) -> int:
        """A run attached to this terminal (a shell, or verify/train whose output the user reads
        live); the CLI, since the SDK has no terminal handling. Returns the exit code."""
        self._require_cli()
        flags = ["--rm", *(["-it"] if tty else []), *options.cli_flags()]
        return subprocess.run(["docker", "run", *flags, image, *command]).returncode

    # --- compose -------------------------------------------------------------------

    def compose(
        self,
        args: Sequence[str],
        project_directory: Path,
        compose_files: Sequence[Path] = (),
        environment: Mapping[str, str] | None = None,
        capture: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose ARGS` for the project in PROJECT_DIRECTORY; later COMPOSE_FILES
        override earlier ones, as compose merges them."""
        self._require_cli()
        files = [option for path in compose_files for option in ("--file", str(path))]
        command = ["docker", "compose", *files, "--project-directory", str(project_directory), *args]
        return subprocess.run(
            command, capture_output=capture, text=True, env={**os.environ, **(environment or {})}, cwd=project_directory, timeout=timeout
        )

    # --- the CLI ---------------------------------------------------------------------

    def _require_cli(self) -> None:
        if shutil.which("docker") is None:
            raise TorchenvError("the docker CLI is not on PATH; run ./invokew (it installs the engine) or install Docker Engine >= 23")

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        self._require_cli()
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600)


def translated(error: Exception, doing: str) -> Exception:
    """An SDK or connection failure as one line: the daemon not answering, a time-out, or
    what the daemon said; anything else stays as it is."""
    if isinstance(error, requests.exceptions.Timeout):
        return TorchenvError(f"{doing} failed: the Docker daemon did not answer within {HTTP_TIMEOUT_S} s; check `docker info`, then retry")
    if isinstance(error, requests.exceptions.ConnectionError | ConnectionRefusedError | FileNotFoundError):
        return TorchenvError(DAEMON_DOWN)
    if isinstance(error, docker.errors.DockerException | requests.exceptions.RequestException):
        return TorchenvError(f"{doing} failed: {api_reason(error)}")
    return error


def gpu_request(gpus: str) -> docker.types.DeviceRequest:
    """`--gpus` as a device request: "all", a count, or "device=0,1"."""
    if gpus == "all":
        return docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
    if gpus.isdigit():
        return docker.types.DeviceRequest(count=int(gpus), capabilities=[["gpu"]])
    devices = gpus.strip('"').removeprefix("device=").split(",")
    return docker.types.DeviceRequest(device_ids=devices, capabilities=[["gpu"]])


class ChunkReader(io.RawIOBase):
    """A byte stream over an iterator of chunks (the SDK's streamed `docker save`)."""

    def __init__(self, chunks: Iterable[bytes], doing: str = "reading from the engine") -> None:
        self._chunks = iter(chunks)
        self._pending = b""
        self._doing = doing

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                raise translated(error, self._doing) from None
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
