"""Pull-to-ready: an empty engine pulls the image from a registry on 127.0.0.1 and runs
`verify` in a container (the naive image: import torch and a matmul). Every trial gets a
second dockerd of its own, with its own data root, exec root, socket and managed
containerd, started and removed here; the user's engine is never touched. Trials
alternate ABBA; the page cache is dropped before each where the machine allows it.

Reported beside the result: the floor on this machine (the bytes the pull writes ÷ the
disk's measured write bandwidth, plus zstd's decode time on one core, measured with the
zstd tool on the pushed layers) and the engine's configuration.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from bench import uncompressed_push
from bench.performance import local_registry, push_gzip
from bench.uncompressed_push import LayerFacts
from torchenv import engine
from torchenv.errors import TorchenvError
from torchenv.pipeline import zstd_push

ROOT = Path("/var/lib/torchenv-bench-engine")
# The second engine's own bridge: dockerd with --bridge=none would delete the host's docker0.
BRIDGE = "torchenv-bench0"
BRIDGE_ADDRESS = "172.31.254.1/24"
SYSTEM_CONTAINERD = Path("/run/containerd/containerd.sock")
REPOSITORY = "bench"
VERIFY = ["verify"]
NAIVE_READY = ["python", "-c", "import torch; a = torch.randn(512, 512); print(float((a @ a).sum()))"]
EVENTS = ("Downloading", "Download complete", "Extracting", "Pull complete")


class Unavailable(Exception):
    """No second engine can be started here; the reason is one line."""


@dataclass
class Sampler:
    """/proc/stat and /proc/vmstat sampled every half second while a trial runs."""

    samples: list[tuple[float, list[int], int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def read() -> tuple[float, list[int], int]:
        cpu = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
        vmstat = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
        return time.perf_counter(), cpu, int(vmstat.get("pgpgout", 0))

    def run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.read())
            self._stop.wait(0.5)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self.samples.append(self.read())

    @staticmethod
    def bound(busy: float, waiting: float) -> str:
        """What held the trial back: the disk, every core, or one core (dockerd extracts one
        layer at a time on one thread, which on 2 cores shows as half the CPU busy)."""
        cores = os.cpu_count() or 1
        if waiting >= 0.2:
            return "disk"
        if busy >= 0.8:
            return "CPU (every core)"
        if busy >= 0.8 / cores:
            return "CPU (one core)"
        return "neither (waiting)"

    def summary(self) -> dict[str, Any]:
        (_, first, out_first), (_, last, out_last) = self.samples[0], self.samples[-1]
        delta = [b - a for a, b in zip(first, last, strict=True)]
        total = sum(delta) or 1
        user, nice, system, _idle, iowait, irq, softirq = delta
        busy = (user + nice + system + irq + softirq) / total
        waiting = iowait / total
        bound = self.bound(busy, waiting)
        return {"cpu_busy": busy, "iowait": waiting, "written_bytes": (out_last - out_first) * 1024, "bound": bound}


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def second_engine(root: Path, containerd_store: bool = False) -> Iterator[docker.DockerClient]:
    """A dockerd of its own under ROOT, empty, removed with everything it wrote."""
    dockerd = shutil.which("dockerd")
    if os.geteuid() != 0 or dockerd is None:
        raise Unavailable("a second, empty engine needs root and dockerd on this host (not Docker Desktop); pull-to-ready is left out")
    if containerd_store and SYSTEM_CONTAINERD.exists():
        # dockerd would use it, and the images would stay in its content store between trials.
        raise Unavailable(
            f"a system containerd runs at {SYSTEM_CONTAINERD}; the containerd-store trials would not start empty, so they are left out"
        )
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    socket = root / "docker.sock"
    config = root / "daemon.json"
    # Written either way: newer engines default to the containerd store on a new data root.
    config.write_text(json.dumps({"features": {"containerd-snapshotter": containerd_store}}))
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    for step in (
        ["ip", "link", "add", BRIDGE, "type", "bridge"],
        ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ):
        if subprocess.run(step, capture_output=True).returncode != 0:
            raise Unavailable(f"cannot make the second engine's bridge {BRIDGE} (`{' '.join(step)}` failed)")
    command = [
        dockerd,
        f"--config-file={config}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{socket}",
        "--containerd-namespace=torchenv-bench",
        "--containerd-plugins-namespace=torchenv-bench-plugins",
        f"--bridge={BRIDGE}",
        "--iptables=false",
        "--ip6tables=false",
    ]
    with open(root / "dockerd.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    client: docker.DockerClient | None = None
    try:
        for _ in range(120):
            with contextlib.suppress(docker.errors.DockerException):
                client = docker.DockerClient(base_url=f"unix://{socket}", timeout=600)
                client.ping()
                break
            if process.poll() is not None:
                raise Unavailable(f"the second dockerd exited at start ({(root / 'dockerd.log').read_text().strip().splitlines()[-1:]})")
            time.sleep(0.5)
        if client is None:
            raise Unavailable("the second dockerd did not answer within 60 s")
        yield client
    finally:
        if client is not None:
            client.close()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def trial(reference: str, command: list[str], containerd_store: bool = False) -> dict[str, Any]:
    """One pull-to-ready on an empty engine: seconds to pulled and to ready, the first time
    of each layer event, the CPU and disk while it ran."""
    with second_engine(ROOT, containerd_store) as client:
        dropped = drop_page_cache()
        repository, _, tag = reference.rpartition(":")
        layers: dict[str, dict[str, float]] = {}
        with Sampler().sampling() as sampler:
            start = time.perf_counter()
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise RuntimeError(f"pulling {reference}: {event['error']}")
                status, layer = event.get("status", ""), event.get("id", "")
                if status in EVENTS:
                    layers.setdefault(layer, {}).setdefault(status, time.perf_counter() - start)
            pulled = time.perf_counter() - start
            output = client.containers.run(reference, command, network_mode="none", remove=True, stderr=True)
            ready = time.perf_counter() - start
        size = client.images.get(reference).attrs["Size"]
        return {
            "pulled": pulled,
            "ready": ready,
            "image_bytes": size,
            "page_cache_dropped": dropped,
            "layers": layers,
            "output_tail": output.decode(errors="replace").strip().splitlines()[-1:],
        } | sampler.summary()


def engine_configuration(containerd_store: bool = False) -> dict[str, Any]:
    with second_engine(ROOT, containerd_store) as client:
        version, info = client.version(), client.info()
    return {
        "engine": version.get("Version"),
        "containerd": next((c.get("Version") for c in version.get("Components", []) if c.get("Name") == "containerd"), None),
        "storage_driver": info.get("Driver"),
        "containerd_image_store": any("snapshotter" in str(status) for status in info.get("DriverStatus") or []),
        "unpigz": shutil.which("unpigz") is not None,
        "igzip": shutil.which("igzip") is not None,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
    }


def write_bandwidth(folder: Path, megabytes: int = 2048) -> float:
    """Bytes per second that dd writes to FOLDER's disk and flushes (fdatasync)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        target = Path(scratch) / "dd"
        start = time.perf_counter()
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={megabytes}", "conv=fdatasync"], check=True, capture_output=True
        )
        return megabytes * (1 << 20) / (time.perf_counter() - start)


def decode_seconds(blobs: list[Path]) -> float | None:
    """zstd's own decode time of the pushed layers on one core (the zstd tool, output discarded)."""
    tool = shutil.which("zstd")
    if tool is None:
        return None
    start = time.perf_counter()
    for blob in blobs:
        subprocess.run([tool, "-d", "-q", "-c", str(blob)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def engine_floor(ours: str, uncompressed: str, layers: list[LayerFacts], pairs: int) -> dict[str, Any]:
    """ABBA pairs on the classic store: torchenv's zstd push (A) against the same image with
    its layers uncompressed (B), which the engine registers with nothing to decode."""
    trials: dict[str, Any] = {"torchenv": [], "uncompressed": [], "layers": [layer.as_dict() for layer in layers]}
    for pair in range(pairs):
        order = [("torchenv", ours), ("uncompressed", uncompressed)]
        for name, reference in order if pair % 2 == 0 else order[::-1]:
            print(f"bench: pull-to-ready, the engine's floor, pair {pair + 1} of {pairs}: {name}", file=sys.stderr)
            trials[name].append(trial(reference, VERIFY))
    return trials


def measure(image: str, naive: str, level: int, pairs: int, containerd_pairs: int = 0, floor_pairs: int = 0) -> dict[str, Any]:
    """ABBA pairs of pull-to-ready, torchenv (A, zstd at LEVEL) against naive (B, gzip); then
    FLOOR_PAIRS against the same image uncompressed (the engine's floor), on the classic store."""
    try:
        configuration = engine_configuration()
    except Unavailable as reason:
        print(f"bench: {reason}", file=sys.stderr)
        return {"unavailable": str(reason)}
    with local_registry() as registry, tempfile.TemporaryDirectory(prefix="pull-bench-", dir=ROOT.parent) as work:
        ours, theirs = f"{registry}/{REPOSITORY}:torchenv", f"{registry}/{REPOSITORY}:naive"
        image_id = engine.get().require_image(image).id
        zstd_push.push(image_id, [ours], registry, Path(work), level)
        blobs = sorted((Path(work) / "zstd-layers").glob("*.zst"))
        push_gzip(naive, registry, REPOSITORY, "naive")
        trials: dict[str, list[dict[str, Any]]] = {"torchenv": [], "naive": []}
        for pair in range(pairs):
            order = [("torchenv", ours, VERIFY), ("naive", theirs, NAIVE_READY)]
            for name, reference, command in order if pair % 2 == 0 else order[::-1]:
                print(f"bench: pull-to-ready, pair {pair + 1} of {pairs}: {name}", file=sys.stderr)
                trials[name].append(trial(reference, command))
        floor_trials: dict[str, Any] = {}
        if floor_pairs:
            uncompressed = f"{registry}/{REPOSITORY}:uncompressed"
            try:
                layers = uncompressed_push.push(image_id, uncompressed, Path(work))
                floor_trials = engine_floor(ours, uncompressed, layers, floor_pairs)
            # The classic pairs are done: a floor that cannot be measured is left out with its
            # reason rather than ending the bench and losing them.
            except (uncompressed_push.NotPushed, Unavailable, TorchenvError, RuntimeError, docker.errors.DockerException) as reason:
                print(f"bench: {reason}; the engine's floor is left out", file=sys.stderr)
                floor_trials = {"unavailable": str(reason)}
        store: dict[str, Any] = {"torchenv": [], "naive": []}
        try:
            for pair in range(containerd_pairs):
                order = [("torchenv", ours, VERIFY), ("naive", theirs, NAIVE_READY)]
                for name, reference, command in order if pair % 2 == 0 else order[::-1]:
                    print(f"bench: pull-to-ready (containerd store), pair {pair + 1}: {name}", file=sys.stderr)
                    store[name].append(trial(reference, command, containerd_store=True))
        except Unavailable as reason:
            print(f"bench: {reason}", file=sys.stderr)
            store = {"unavailable": str(reason)}
        decode = decode_seconds(blobs)
    bandwidth = write_bandwidth(ROOT.parent)
    measured = trials["torchenv"] or store.get("torchenv") or []
    written = statistics.median(t["image_bytes"] for t in measured) if measured else 0
    return {
        "configuration": configuration,
        "level": level,
        "trials": trials,
        "containerd_store": store,
        "engine_floor": floor_trials,
        "floor": {
            "write_bytes_per_s": bandwidth,
            "image_bytes": written,
            "decode_s_one_core": decode,
            "seconds": written / bandwidth + (decode or 0),
        },
    }


def _times_row(label: str, trials: list[dict[str, Any]]) -> str:
    """Median, min-max and what bound them, of the trials' seconds to ready."""
    ready = [t["ready"] for t in trials]
    bound = "/".join(sorted({t["bound"] for t in trials}))
    return f"| {label} | {statistics.median(ready):.1f} | {min(ready):.1f}-{max(ready):.1f} | {bound} |"


def _row(label: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    a, b = [t["ready"] for t in ours], [t["ready"] for t in theirs]
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return [
        _times_row(f"{label}: torchenv", ours),
        _times_row(f"{label}: naive", theirs),
        f"| {label}: ratio (median of ready) | {statistics.median(a) / statistics.median(b):.2f} | per pair: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f" | {sum(r <= 0.5 for r in ratios)} of {len(ratios)} pairs <= 0.5 |",
    ]


def extraction_seconds(trial: dict[str, Any]) -> dict[str, float]:
    """Per layer (short ID): from its extraction's start to its pull's end."""
    return {
        layer[:12]: events["Pull complete"] - events["Extracting"]
        for layer, events in trial["layers"].items()
        if "Extracting" in events and "Pull complete" in events
    }


def registration_seconds(floor_trials: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    """Per layer of the uncompressed image (bottom first; those of a megabyte or more): its
    facts and the median seconds from its extraction's start to its pull's end. An
    uncompressed layer's blob digest is its diff ID, which the pull's events name."""
    per_trial = [extraction_seconds(t) for t in floor_trials["uncompressed"]]
    seconds = []
    for layer in floor_trials.get("layers", []):
        if layer["bytes"] < 1 << 20:
            continue
        short = layer["diff_id"].removeprefix("sha256:")[:12]
        spans = [trial_spans[short] for trial_spans in per_trial if short in trial_spans]
        seconds.append((layer, statistics.median(spans) if spans else float("nan")))
    return seconds


def _floor_lines(floor_trials: dict[str, Any], naive: list[dict[str, Any]]) -> tuple[list[str], str]:
    """The engine's floor as table rows, and the sentence on its layers."""
    ours, bare = [t["ready"] for t in floor_trials["torchenv"]], [t["ready"] for t in floor_trials["uncompressed"]]
    ratios = [a / b for a, b in zip(ours, bare, strict=True)]
    rows = [
        _times_row("classic store: torchenv, layers uncompressed (nothing to decode)", floor_trials["uncompressed"]),
        f"| classic store: zstd / uncompressed (median of ready, {len(ratios)} ABBA pairs) | "
        f"{statistics.median(ours) / statistics.median(bare):.2f} | per pair: " + ", ".join(f"{r:.2f}" for r in ratios) + " | |",
    ]
    if naive:
        rows.append(
            f"| classic store: uncompressed / naive (median of ready) | "
            f"{statistics.median(bare) / statistics.median(t['ready'] for t in naive):.2f} | | |"
        )
    layers = "; ".join(
        f"{layer['bytes'] / 1e9:.2f} GB in {layer['entries'] / 1000:.1f}k entries: {seconds:.1f} s"
        for layer, seconds in registration_seconds(floor_trials)
    )
    return rows, f"The engine's registration of each uncompressed layer (extracting to pull complete, median): {layers}."


def described(configuration: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in configuration.items())


def table(results: dict[str, Any]) -> str:
    if "unavailable" in results:
        return f"(pull-to-ready left out: {results['unavailable']})"
    trials, floor, config = results["trials"], results["floor"], results["configuration"]
    lines = [
        f"| pull-to-ready, empty engine, {len(trials['torchenv'])} ABBA pairs | median s | min-max s | bound by |",
        "| --- | --- | --- | --- |",
        *_row("classic store", trials["torchenv"], trials["naive"]),
    ]
    floor_trials, registration = results.get("engine_floor") or {}, ""
    if "unavailable" in floor_trials:
        lines.append(f"| the engine's floor: left out ({floor_trials['unavailable']}) | | | |")
    elif floor_trials.get("uncompressed"):
        rows, registration = _floor_lines(floor_trials, trials["naive"])
        lines += rows
    store = results.get("containerd_store", {})
    if "unavailable" in store:
        lines.append(f"| containerd store: left out ({store['unavailable']}) | | | |")
    elif store.get("torchenv"):
        lines += _row("containerd store", results["containerd_store"]["torchenv"], results["containerd_store"]["naive"])
    decode = floor["decode_s_one_core"]
    lines += [
        "",
        f"Floor here: {floor['image_bytes'] / 1e9:.2f} GB to write at {floor['write_bytes_per_s'] / 1e6:.0f} MB/s "
        f"(dd, fdatasync) = {floor['image_bytes'] / floor['write_bytes_per_s']:.1f} s, plus zstd's decode on one core "
        f"{decode:.1f} s = {floor['seconds']:.1f} s."
        if decode is not None
        else "Floor: no zstd tool here to measure the decode time.",
        *([registration] if registration else []),
        f"Engine: {described(config)}",
    ]
    if (classic := results.get("classic")) and classic.get("configuration") not in (None, config):
        lines.append(
            f"The classic store's rows and the floor were measured earlier ({classic['measured']}), "
            f"on: {described(classic['configuration'])}"
        )
    return "\n".join(lines)
