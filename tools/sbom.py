"""A CycloneDX SBOM of the pakr wheel: what installing it puts on a server, versions pinned.

``make sbom`` runs this. The wheel is installed into a fresh venv without pip (so nothing but
pakr and what it pulls in is there), ``cyclonedx-py environment`` describes that venv with pakr
(from pyproject.toml) as the root component, and the wheel's SHA-256 is added to the root, so
the SBOM names exactly the artefact it describes. The result is then checked: every runtime
requirement of the wheel (its ``Requires-Dist`` without extras markers) must be a component
whose version satisfies the requirement, and the root must depend on each; otherwise the
script fails rather than write an SBOM that silently misses a dependency.

    python tools/sbom.py --wheel dist/pakr-0.1.0-py3-none-any.whl --out dist/pakr.cdx.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CYCLONEDX = Path(sys.executable).with_name("cyclonedx-py")


class SbomError(Exception):
    """The SBOM could not be made, or does not say what the wheel needs."""


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The runtime requirements in the wheel's METADATA (those outside any extra)."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode("utf-8")
    requirements = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.removeprefix("Requires-Dist:").strip())
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                requirements.append(requirement)
    return requirements


def check_sbom(bom: dict[str, Any], requirements: list[Requirement]) -> list[str]:
    """What is wrong with ``bom`` as the SBOM of a wheel with ``requirements`` (empty: fine)."""
    problems = []
    if bom.get("bomFormat") != "CycloneDX":
        problems.append("not a CycloneDX document")
    components = {canonicalize_name(c["name"]): c for c in bom.get("components", [])}
    root = bom.get("metadata", {}).get("component", {})
    root_ref = root.get("bom-ref")
    depends = next(
        (d.get("dependsOn", []) for d in bom.get("dependencies", []) if d["ref"] == root_ref),
        [],
    )
    for requirement in requirements:
        component = components.get(canonicalize_name(requirement.name))
        if component is None:
            problems.append(f"{requirement.name} is not listed")
            continue
        if not requirement.specifier.contains(component["version"], prereleases=True):
            problems.append(f"{requirement.name} {component['version']} violates {requirement}")
        if component.get("bom-ref") not in depends:
            problems.append(f"the root component does not depend on {requirement.name}")
    return problems


def install_into_fresh_env(wheel: Path, env: Path) -> Path:
    """A venv at ``env`` holding the wheel and its runtime dependencies only; its python."""
    if env.exists():
        shutil.rmtree(env)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
    python = env / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600)
    return python


def make_sbom(wheel: Path, out: Path, env: Path) -> dict[str, Any]:
    """Install ``wheel`` into ``env``, describe it, add the wheel's hash, check, write ``out``."""
    python = install_into_fresh_env(wheel, env)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "bom.json"
        subprocess.run(
            [
                str(CYCLONEDX),
                "environment",
                "--pyproject",
                str(ROOT / "pyproject.toml"),
                "--mc-type",
                "library",
                "--output-reproducible",
                "--output-format",
                "JSON",
                "--output-file",
                str(raw),
                str(python),
            ],
            check=True,
            timeout=300,
        )
        bom: dict[str, Any] = json.loads(raw.read_text(encoding="utf-8"))
    root = bom["metadata"]["component"]
    root["hashes"] = [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    root.setdefault("properties", []).append({"name": "pakr:wheel", "value": wheel.name})
    problems = check_sbom(bom, wheel_requirements(wheel))
    if problems:
        raise SbomError("; ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return bom


def build_wheel(outdir: Path) -> Path:
    """Build the wheel of this checkout into ``outdir``."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = outdir.glob("pakr-*.whl")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="the wheel (default: build one)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "pakr.cdx.json")
    parser.add_argument("--env", type=Path, default=ROOT / "build" / "sbom-env")
    args = parser.parse_args(argv)
    wheel = args.wheel or build_wheel(args.out.parent)
    try:
        bom = make_sbom(wheel, args.out, args.env)
    except SbomError as exc:
        print(f"sbom: the SBOM misses what the wheel needs: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(f"{c['name']} {c['version']}" for c in bom["components"])
    print(f"sbom: wrote {args.out} ({len(bom['components'])} components: {names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
