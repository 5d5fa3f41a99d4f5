"""`invoke report` on a results file shaped like the bench's: the table judges each
target, and the chart is a real PNG."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench import report
from bench.performance import markdown
from torchenv.model.records import BenchResults

LAYERS = [
    {"step": "Debian base (mmdebstrap)", "uncompressed": 440e6, "gzip": 150e6, "zstd": 120e6},
    {"step": "venv: torch and the rest", "uncompressed": 4.5e9, "gzip": 2.3e9, "zstd": 2.0e9},
    {"step": "app (verify, train)", "uncompressed": 40e3, "gzip": 10e3, "zstd": 9e3},
]
RESULTS = {
    "measured": "2026-11-29 12:00 UTC",
    "variants": {
        "cu117": {
            "sizes": {
                "image": 4.94e9,
                "naive_image": 4.7e9,
                "wheels_installed": 4.4e9,
                "gzip": 2.45e9,
                "naive_gzip": 2.47e9,
                "zstd": 2.12e9,
                "layers": LAYERS,
            },
            "times": {
                "no_op_rebuild": 0.6,
                "demo_edit_rebuild": 3.7,
                "floor_download": 36.0,
                "floor_install": 24.0,
                "cold_build": 90.0,
                "compose_verify": 2.0,
                "import_torch_container": 1.1,
                "import_torch_host": 1.0,
                "train_samples_per_s_container": 99_000,
                "train_samples_per_s_host": 100_000,
            },
        }
    },
}


def test_table_judges_every_target() -> None:
    table = markdown(BenchResults.from_json(RESULTS))
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert "1.05x | <= 0.95x: missed" in rows["image / naive single-stage image (uncompressed)"]
    assert "540.00 MB | <= 400 MB: missed" in rows["image - installed size of the locked wheels (untrimmed)"]
    assert "0.86x | <= 0.9x: met" in rows["pushed with zstd (`invoke push`) / naive pushed with gzip"]
    assert "1.50x | <= 1.3x: missed" in rows["cold build / floor (download + uv install)"]
    assert ">= 0.97x: met" in rows["training throughput: container / host, same wheels"]
    assert len(rows) == 10


def test_report_writes_the_table_and_a_png(tmp_path: Path) -> None:
    results = tmp_path / "latest.json"
    results.write_text(json.dumps(RESULTS))
    table, png = report.write(tmp_path / "out", results)
    assert "| cu117 | venv: torch and the rest | 4500 MB | 2300 MB | 2000 MB |" in table.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def dockerfile_steps(path: Path) -> list[str]:
    """Each RUN/ADD/COPY of a Dockerfile as the image history shows it ("RUN /bin/sh -c CMD"),
    continuation lines joined and mount flags dropped."""
    text = path.read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction in ("ADD", "COPY"):
            steps.append(f"{instruction} {rest}")
        elif instruction == "RUN":
            command = " ".join(word for word in rest.split() if not word.startswith("--mount="))
            steps.append(f"RUN /bin/sh -c {command}")
    return steps


def test_the_bench_names_every_layer_the_dockerfiles_make() -> None:
    """The bench tells layers apart by the step that made them: an edit of a Dockerfile that
    it would no longer recognise fails here, not silently in the report."""
    from bench.performance import UV_CACHE_MOUNT, describe

    root = Path(__file__).resolve().parents[2]
    steps = dockerfile_steps(root / "docker" / "Dockerfile") + dockerfile_steps(root / "docker" / "base" / "Dockerfile")
    named = {describe(step) for step in steps}
    assert named == {
        "Debian base (mmdebstrap)",
        "base adapted (user, checks)",
        "venv: NVIDIA libraries",
        "venv: torch and the rest",
        "venv check (writes nothing)",
        "app (verify, train)",
        "project: its packages",
        "project: its code",
    } | {describe(step) for step in steps if "/opt/installer" in step}, steps
    # The cold-build measurement empties uv's cache mount, found by its BuildKit description.
    mounted, _, command = UV_CACHE_MOUNT.removeprefix("cached mount ").partition(" from exec /bin/sh -c ")
    dockerfile = (root / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    assert re.search(rf"--mount=type=cache,id=torchenv-uv,target={re.escape(mounted)}\b.*\s{re.escape(command)}", dockerfile)
