"""`invoke audit`: grype, anchore's scanner, over a built image's own SBOM, judged against
images/audit-allowlist.toml. Where grype or its database cannot be reached, a report made
elsewhere (the GitHub workflow's) is judged instead."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

from torchenv import PROJECT_ROOT, display_path, engine
from torchenv.engine import RunOptions
from torchenv.errors import TorchenvError
from torchenv.model import audit
from torchenv.model.matrix import Variant
from torchenv.model.names import Label
from torchenv.model.settings import Settings
from torchenv.pipeline.build import image_tag

ALLOWLIST = PROJECT_ROOT / "images" / "audit-allowlist.toml"
ELSEWHERE = "audit a report made where it can (grype sbom:FILE -o json > report.json): invoke audit --report report.json"


def write_sbom(variant: Variant, settings: Settings, output: Path) -> Path:
    """Copies the built image's SBOM (where its label says it is) to OUTPUT."""
    tag = image_tag(variant, settings)
    facts = engine.get().image(tag)
    if facts is None:
        raise TorchenvError(f"no image {tag}; build it first: invoke build --variant {variant.name}")
    path = facts.labels.get(Label.SBOM)
    if not path:
        raise TorchenvError(
            f"{tag} carries no SBOM (it was built without a lock); lock it and rebuild: invoke lock --variant {variant.name}"
        )
    text = engine.get().output_of(tag, ["cat", path], RunOptions(platform=variant.platform))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output


def scanner() -> str:
    grype = shutil.which("grype")
    if grype is None:
        raise TorchenvError(f"invoke audit scans with grype, which is not installed here (Debian does not package it); {ELSEWHERE}")
    return grype


def scan(sbom: Path) -> dict[str, object]:
    """grype's JSON report on SBOM."""
    grype = scanner()
    result = subprocess.run([grype, f"sbom:{sbom}", "-o", "json"], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        reason = engine.last_line(result.stderr) or f"exit {result.returncode}"
        raise TorchenvError(
            f"grype could not scan {display_path(sbom)} ({reason}); where its vulnerability database cannot be reached, {ELSEWHERE}"
        )
    return json.loads(result.stdout)


def read_report(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TorchenvError(f"no report {path}; give the path of grype's JSON output") from None
    except json.JSONDecodeError as error:
        raise TorchenvError(f"{display_path(path)} is not JSON (line {error.lineno}); give grype's JSON output (-o json)") from None


def judge_report(report: dict[str, object], threshold: str, allowlist: Path = ALLOWLIST, today: date | None = None) -> audit.Verdict:
    return audit.judge(audit.findings_of(report), audit.load_allowlist(allowlist), threshold, today or date.today())


def verdict_lines(verdict: audit.Verdict, threshold: str, allowlist: Path = ALLOWLIST) -> list[str]:
    lines = [f"failing: {finding.line()}" for finding in verdict.failing]
    lines += [f"expired: {entry.id} was accepted until {entry.expires} ({display_path(allowlist)})" for _, entry in verdict.expired]
    lines += [f"accepted until {entry.expires}: {finding.line()} — {entry.reason}" for finding, entry in verdict.accepted]
    lines.append(
        f"{len(verdict.failing)} failing, {len(verdict.accepted)} accepted at {threshold} or above; {len(verdict.below)} below {threshold}"
    )
    return lines
