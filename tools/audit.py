"""Audit what the pakr wheel installs against the advisory data this machine can reach.

``make audit`` runs this on the venv ``make sbom`` filled (the wheel and its runtime
dependencies, nothing else). pip-audit does the auditing, first against OSV, then against
PyPI's per-release JSON API (the ``vulnerabilities`` PyPI serves from the same advisory
database). Some package indexes (mirrors) serve only the project-level JSON, whose
``vulnerabilities`` list is that of the latest release; a package pip-audit could not audit is
then checked there when its installed version *is* the latest release, and reported as NOT
AUDITED otherwise. Nothing is skipped silently.

Exit status: 0 every package audited and clean; 1 a known vulnerability; 2 some package could
not be audited (the output says which and why).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")
OSV_HOST = "api.osv.dev"
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
SELF = "pakr"  # the audited project itself is not on PyPI


@dataclass
class Finding:
    """One installed distribution and what the audit learned about it."""

    name: str
    version: str
    vulns: list[str] = field(default_factory=list)
    source: str = ""  # where the verdict came from; empty: not audited
    why_not: str = ""


def site_packages(env: Path) -> Path:
    (path,) = env.glob("lib/python3*/site-packages")
    return path


def run_pip_audit(path: Path, service: str) -> tuple[list[dict[str, Any]], str]:
    """pip-audit's JSON dependency list for ``path`` against ``service`` (or why it failed)."""
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            "--path",
            str(path),
            "--vulnerability-service",
            service,
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--desc",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"pip-audit -s {service} failed: {tail}"
    deps: list[dict[str, Any]] = report.get("dependencies", [])
    return deps, ""


def latest_release_vulns(name: str, version: str) -> tuple[list[str] | None, str]:
    """Advisory ids of ``name``'s latest release if that is ``version`` (else None and why)."""
    try:
        with urllib.request.urlopen(PYPI_JSON.format(name=name), timeout=30) as response:  # noqa: S310
            data = json.load(response)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        return None, f"PyPI project JSON unreachable ({exc})"
    latest = data.get("info", {}).get("version")
    if latest != version:
        return None, (
            f"installed {version} is not the latest release ({latest}); the reachable index"
            " serves advisories of the latest release only"
        )
    return [v["id"] for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")], ""


def audit(env: Path) -> tuple[list[Finding], list[str]]:
    """Findings for every distribution in ``env``, and notes on the services tried."""
    path = site_packages(env)
    notes: list[str] = []
    findings = {
        canonicalize_name(d.metadata["Name"]): Finding(d.metadata["Name"], d.version)
        for d in importlib.metadata.distributions(path=[str(path)])
    }
    services = ["osv", "pypi"]
    try:
        socket.getaddrinfo(OSV_HOST, 443)
    except OSError as exc:
        notes.append(f"OSV not tried: cannot resolve {OSV_HOST} ({exc.strerror or exc})")
        services.remove("osv")
    for service in services:
        deps, error = run_pip_audit(path, service)
        if error:
            notes.append(error)
            continue
        for dep in deps:
            key = canonicalize_name(dep["name"])
            finding = findings.get(key)
            if finding is None or finding.source or key == SELF:
                continue
            if "skip_reason" in dep:
                finding.why_not = f"{service}: {dep['skip_reason']}"
            else:
                finding.vulns = [v["id"] for v in dep.get("vulns", [])]
                finding.source = f"pip-audit -s {service}"
                finding.why_not = ""
    for key, finding in findings.items():
        if finding.source or key == SELF:
            continue
        vulns, why = latest_release_vulns(finding.name, finding.version)
        if vulns is None:
            finding.why_not = f"{finding.why_not}; {why}" if finding.why_not else why
        else:
            finding.vulns, finding.source = vulns, "PyPI project JSON (latest release)"
    return [f for k, f in sorted(findings.items()) if k != SELF], notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", type=Path, default=ROOT / "build" / "sbom-env")
    args = parser.parse_args(argv)
    if not args.env.is_dir():
        print(f"audit: {args.env} does not exist; run `make sbom` first", file=sys.stderr)
        return 2
    findings, notes = audit(args.env)
    for note in notes:
        print(f"audit: {note}")
    for f in findings:
        verdict = (
            f"VULNERABLE {', '.join(f.vulns)}"
            if f.vulns
            else ("clean" if f.source else f"NOT AUDITED: {f.why_not}")
        )
        print(f"  {f.name} {f.version}: {verdict}" + (f"  [{f.source}]" if f.source else ""))
    vulnerable = [f for f in findings if f.vulns]
    unaudited = [f for f in findings if not f.source]
    audited = len(findings) - len(unaudited)
    print(
        f"audit: {audited}/{len(findings)} packages audited, {len(vulnerable)} with known"
        f" vulnerabilities, {len(unaudited)} not audited"
    )
    if vulnerable:
        return 1
    return 2 if unaudited else 0


if __name__ == "__main__":
    sys.exit(main())
