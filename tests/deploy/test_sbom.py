"""The SBOM of the wheel (``make sbom``): CycloneDX, pakr at the root, every runtime dependency.

The long test builds the wheel, installs it into a fresh venv and runs ``tools/sbom.py`` as
``make sbom`` does, then reads the SBOM back against pyproject.toml (not against the wheel the
tool itself checks), so a dependency added to pyproject but missing from the SBOM fails here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ["pytest", "ruff", "mypy", "hypothesis", "grpcio-tools", "cyclonedx-bom", "pip"]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pakr_tools_sbom", ROOT / "tools" / "sbom.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"]]


def _bom(components: dict[str, str]) -> dict[str, Any]:
    refs = [f"{name}=={version}" for name, version in components.items()]
    return {
        "bomFormat": "CycloneDX",
        "metadata": {"component": {"name": "pakr", "bom-ref": "root-component"}},
        "components": [
            {"name": n, "version": v, "bom-ref": r}
            for (n, v), r in zip(components.items(), refs, strict=True)
        ],
        "dependencies": [{"ref": "root-component", "dependsOn": refs}],
    }


def test_check_names_each_missing_or_wrong_dependency() -> None:
    tool = _load_tool()
    requirements = [Requirement("grpcio>=1.83"), Requirement("PyJWT[crypto]>=2.8")]
    assert tool.check_sbom(_bom({"grpcio": "1.85.3", "pyjwt": "2.10.0"}), requirements) == []
    assert tool.check_sbom(_bom({"pyjwt": "2.10.0"}), requirements) == ["grpcio is not listed"]
    (problem,) = tool.check_sbom(_bom({"grpcio": "1.82.3", "PyJWT": "2.10.0"}), requirements)
    assert "violates grpcio>=1.83" in problem
    orphan = _bom({"grpcio": "1.85.3", "PyJWT": "2.10.0"})
    orphan["dependencies"] = []
    assert len(tool.check_sbom(orphan, requirements)) == 2


@pytest.mark.timeout(600)
def test_sbom_of_the_wheel_lists_the_runtime_dependencies(tmp_path: Path) -> None:
    out = tmp_path / "dist" / "pakr.cdx.json"
    tool = str(ROOT / "tools" / "sbom.py")
    subprocess.run(
        [sys.executable, tool, "--out", str(out), "--env", str(tmp_path / "env")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    bom = json.loads(out.read_text(encoding="utf-8"))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    root = bom["metadata"]["component"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert (root["name"], root["version"]) == ("pakr", project["version"])
    (wheel,) = out.parent.glob("pakr-*.whl")
    assert root["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}
    ]
    components = {canonicalize_name(c["name"]): c for c in bom["components"]}
    for requirement in _runtime_requirements():
        component = components.get(canonicalize_name(requirement.name))
        assert component is not None, f"{requirement.name} missing from the SBOM"
        assert requirement.specifier.contains(component["version"]), (requirement, component)
        assert component["purl"].startswith("pkg:pypi/")
    for name in DEV_ONLY:
        assert canonicalize_name(name) not in components, f"dev-only {name} in the SBOM"
    root_deps = next(d for d in bom["dependencies"] if d["ref"] == root["bom-ref"])
    assert len(root_deps["dependsOn"]) == len(_runtime_requirements())
