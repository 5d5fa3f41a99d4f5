"""Vulnerability findings in an image's SBOM, as grype reports them (its JSON output), judged
against the allowlist: a finding at or above the threshold fails the audit unless an
unexpired allowlist entry accepts it with a reason. Pure data and decisions."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from torchenv import display_path
from torchenv.errors import TorchenvError

# grype's severities, mildest first.
SEVERITIES = ("negligible", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Finding:
    id: str
    aliases: tuple[str, ...]
    severity: str
    package: str
    version: str
    kind: str
    fixed_in: tuple[str, ...]

    def names(self) -> set[str]:
        return {self.id, *self.aliases}

    def line(self) -> str:
        fix = f"fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "no fix yet"
        also = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.severity} {self.id}{also}: {self.package} {self.version} ({self.kind}); {fix}"


@dataclass(frozen=True)
class Acceptance:
    """One allowlist entry: a finding accepted, for a reason, until a date."""

    id: str
    reason: str
    expires: date
    package: str = ""

    def accepts(self, finding: Finding) -> bool:
        return self.id in finding.names() and (not self.package or self.package == finding.package)


def severity_rank(severity: str) -> int:
    name = severity.lower()
    return SEVERITIES.index(name) if name in SEVERITIES else -1  # grype's "Unknown": below every threshold


def findings_of(report: dict[str, Any]) -> list[Finding]:
    """The findings of a grype JSON report; anything else fails in one line."""
    if not isinstance(report, dict) or not isinstance(report.get("matches"), list):
        raise TorchenvError("the report is not grype's JSON output (no list of matches); run `grype sbom:FILE -o json`")
    found = []
    for match in report["matches"]:
        try:
            vulnerability, artifact = match["vulnerability"], match["artifact"]
            found.append(
                Finding(
                    id=str(vulnerability["id"]),
                    aliases=tuple(
                        sorted(
                            str(related["id"])
                            for related in match.get("relatedVulnerabilities", [])
                            if related.get("id") != vulnerability["id"]
                        )
                    ),
                    severity=str(vulnerability.get("severity", "Unknown")).lower(),
                    package=str(artifact["name"]),
                    version=str(artifact["version"]),
                    kind=str(artifact.get("type", "")),
                    fixed_in=tuple(str(version) for version in vulnerability.get("fix", {}).get("versions", [])),
                )
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise TorchenvError(f"a match in the report lacks or misshapes {error}; is it grype's JSON output?") from None
    return sorted(set(found), key=lambda finding: (-severity_rank(finding.severity), finding.package, finding.id))


def load_allowlist(path: Path) -> list[Acceptance]:
    """The allowlist at PATH (absent: empty); an entry without its id, reason or expiry date fails in one line."""
    if not path.exists():
        return []
    try:
        entries = tomllib.loads(path.read_text()).get("accept", [])
    except tomllib.TOMLDecodeError as error:
        raise TorchenvError(f"{display_path(path)} is not valid TOML ({error})") from None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise TorchenvError(f"{display_path(path)}: accept must be a list of tables ([[accept]] with id, reason and expires)")
    accepted = []
    for number, entry in enumerate(entries, 1):
        missing = [key for key in ("id", "reason", "expires") if not entry.get(key)]
        if missing:
            raise TorchenvError(
                f"{display_path(path)}: entry {number} has no {' and no '.join(missing)}; every accepted finding needs all three"
            )
        # A TOML date and time is a datetime, which compares with no date: a date only.
        if not isinstance(entry["expires"], date) or isinstance(entry["expires"], datetime):
            raise TorchenvError(
                f"{display_path(path)}: entry {number} ({entry['id']}) expires {entry['expires']!r}; write a date: expires = 2027-06-30"
            )
        accepted.append(Acceptance(str(entry["id"]), str(entry["reason"]), entry["expires"], str(entry.get("package", ""))))
    return accepted


@dataclass(frozen=True)
class Verdict:
    failing: list[Finding]
    accepted: list[tuple[Finding, Acceptance]]
    # Entries that would accept a finding but have expired: the finding fails again.
    expired: list[tuple[Finding, Acceptance]]
    below: list[Finding]

    @property
    def passed(self) -> bool:
        return not self.failing


def judge(findings: list[Finding], allowlist: list[Acceptance], threshold: str, today: date) -> Verdict:
    if threshold not in SEVERITIES:
        raise TorchenvError(f"unknown severity {threshold!r}; use one of {', '.join(SEVERITIES)}")
    failing, accepted, expired, below = [], [], [], []
    for finding in findings:
        if severity_rank(finding.severity) < SEVERITIES.index(threshold):
            below.append(finding)
            continue
        entry = next((entry for entry in allowlist if entry.accepts(finding)), None)
        if entry is not None and entry.expires >= today:
            accepted.append((finding, entry))
        else:
            failing.append(finding)
            if entry is not None:
                expired.append((finding, entry))
    return Verdict(failing, accepted, expired, below)
