"""`invoke audit`'s reading and judging, on a report in grype's JSON output format
(tests/unit/data/grype-report.json: written for these tests after grype's JSON presenter,
with real advisories of packages cu117 holds; grype and its database cannot be reached
from this machine, so no report is recorded from a run here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from torchenv import PROJECT_ROOT
from torchenv.errors import TorchenvError
from torchenv.model import audit
from torchenv.pipeline import audit as audit_pipeline

REPORT = Path(__file__).parent / "data" / "grype-report.json"
TODAY = date(2026, 12, 2)


def report() -> dict[str, object]:
    return json.loads(REPORT.read_text())


def allowlist(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "allowlist.toml"
    path.write_text(text)
    return path


def test_the_findings_are_read_mildest_last_with_their_aliases() -> None:
    findings = audit.findings_of(report())
    assert [(finding.severity, finding.package) for finding in findings] == [
        ("critical", "torch"), ("critical", "zlib1g"), ("high", "setuptools"), ("negligible", "apt"), ("unknown", "tar"),
    ]  # fmt: skip
    torch = findings[0]
    assert torch.names() == {"GHSA-53q9-r3pm-6pq6", "CVE-2025-32434"} and torch.fixed_in == ("2.6.0",)
    assert torch.line() == "critical GHSA-53q9-r3pm-6pq6 (CVE-2025-32434): torch 2.0.1 (python); fixed in 2.6.0"


def test_the_shipped_allowlist_accepts_torchs_advisory_by_its_alias_and_nothing_else() -> None:
    verdict = audit_pipeline.judge_report(report(), "critical", today=TODAY)
    assert [(finding.package, entry.id) for finding, entry in verdict.accepted] == [("torch", "CVE-2025-32434")]
    assert [finding.package for finding in verdict.failing] == ["zlib1g"] and not verdict.passed
    assert [finding.package for finding in verdict.below] == ["setuptools", "apt", "tar"]
    # A lower threshold fails the High one too; grype's Unknown is below every threshold.
    assert [finding.package for finding in audit_pipeline.judge_report(report(), "high", today=TODAY).failing] == ["zlib1g", "setuptools"]
    assert "tar" in [finding.package for finding in audit_pipeline.judge_report(report(), "negligible", today=TODAY).below]


def test_an_expired_or_narrower_entry_accepts_nothing(tmp_path: Path) -> None:
    expired = allowlist(tmp_path, '[[accept]]\nid = "CVE-2023-45853"\nreason = "MiniZip is not built"\nexpires = 2026-12-01\n')
    verdict = audit_pipeline.judge_report(report(), "critical", expired, TODAY)
    assert "zlib1g" in [finding.package for finding in verdict.failing]
    assert [(finding.package, entry.expires) for finding, entry in verdict.expired] == [("zlib1g", date(2026, 12, 1))]
    lines = audit_pipeline.verdict_lines(verdict, "critical", expired)
    assert "expired: CVE-2023-45853 was accepted until 2026-12-01" in "\n".join(lines)
    assert lines[-1] == "2 failing, 0 accepted at critical or above; 3 below critical"
    current = allowlist(tmp_path, '[[accept]]\nid = "CVE-2023-45853"\nreason = "MiniZip is not built"\nexpires = 2026-12-02\n')
    assert audit_pipeline.judge_report(report(), "critical", current, TODAY).accepted[0][1].reason == "MiniZip is not built"
    other_package = allowlist(tmp_path, '[[accept]]\nid = "CVE-2023-45853"\npackage = "zlib1g-dev"\nreason = "r"\nexpires = 2030-01-01\n')
    assert not audit_pipeline.judge_report(report(), "critical", other_package, TODAY).accepted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[accept]]\nid = "CVE-1"\nexpires = 2030-01-01\n', r"entry 1 has no reason; every accepted finding needs all three"),
        (
            '[[accept]]\nid = "CVE-1"\nreason = "r"\nexpires = "soon"\n',
            r"entry 1 \(CVE-1\) expires 'soon'; write a date: expires = 2027-06-30",
        ),
        ("[[accept]\n", r"is not valid TOML"),
        ('accept = "x"\n', r"accept must be a list of tables"),
        (
            '[[accept]]\nid = "CVE-1"\nreason = "r"\nexpires = 2030-01-01T00:00:00\n',
            r"entry 1 \(CVE-1\) expires datetime.datetime\(2030, 1, 1, 0, 0\); write a date: expires = 2027-06-30",
        ),
    ],
)
def test_a_malformed_allowlist_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TorchenvError, match=message):
        audit.load_allowlist(allowlist(tmp_path, text))


def test_what_is_not_a_grype_report_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TorchenvError, match=r"^the report is not grype's JSON output \(no list of matches\)"):
        audit.findings_of({"bomFormat": "CycloneDX"})
    with pytest.raises(TorchenvError, match=r"^a match in the report lacks or misshapes 'artifact'"):
        audit.findings_of({"matches": [{"vulnerability": {"id": "CVE-1"}}]})
    # Malformed in other ways (issue 35): a report that is a string, a fix that is a list.
    with pytest.raises(TorchenvError, match=r"^the report is not grype's JSON output"):
        audit.findings_of("matches")  # type: ignore[arg-type]
    broken_fix = {"vulnerability": {"id": "CVE-1", "fix": ["1.0"]}, "artifact": {"name": "a", "version": "1"}}
    with pytest.raises(TorchenvError, match=r"^a match in the report lacks or misshapes"):
        audit.findings_of({"matches": [broken_fix]})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TorchenvError, match=r"broken.json is not JSON \(line 1\)"):
        audit_pipeline.read_report(tmp_path / "broken.json")


def test_without_grype_the_audit_says_where_to_run_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(audit_pipeline.shutil, "which", lambda name: None)
    with pytest.raises(TorchenvError, match=r"scans with grype, which is not installed here .*invoke audit --report report.json$"):
        audit_pipeline.scan(tmp_path / "sbom.json")


def run_audit(*args: str) -> subprocess.CompletedProcess[str]:
    invoke = Path(sys.executable).with_name("invoke")
    return subprocess.run(
        [str(invoke), "audit", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_invoke_audit_judges_a_report_and_fails_in_one_line() -> None:
    result = run_audit("--report", str(REPORT))
    assert result.returncode != 0
    assert "torchenv: failing: critical CVE-2023-45853: zlib1g 1:1.2.13.dfsg-1 (deb); no fix yet" in result.stdout
    assert "torchenv: accepted until 2027-06-30: critical GHSA-53q9-r3pm-6pq6 (CVE-2025-32434): torch 2.0.1" in result.stdout
    assert result.stderr.strip() == (
        "torchenv: error: 1 finding(s) at critical or above are not accepted; upgrade what they name, or accept each with "
        "a reason and an expiry date in images/audit-allowlist.toml"
    )
    assert run_audit("--report", str(REPORT), "--severity", "severe").stderr.startswith(
        "torchenv: error: unknown severity 'severe'; use one of"
    )
