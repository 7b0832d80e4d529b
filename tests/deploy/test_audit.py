"""``make audit`` (tools/audit.py): every installed package ends audited or named as not audited.

The advisory services are replaced here (the real run is ``make audit``; its answer changes
with the advisory data, so it is not part of ``make test``): pip-audit's verdicts are used as
they come, a package pip-audit skipped is judged on its project JSON only when the installed
version is the latest release, and anything else is reported, never counted as clean.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pakr_tools_audit", ROOT / "tools" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


def _fake_env(tmp_path: Path, packages: dict[str, str]) -> Path:
    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    for name, version in packages.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return tmp_path / "env"


PROJECT_JSON = {
    "goodlib": {"info": {"version": "2.0"}, "vulnerabilities": []},
    "badlib": {
        "info": {"version": "1.0"},
        "vulnerabilities": [
            {"id": "PYSEC-1", "withdrawn": None},
            {"id": "GHSA-old", "withdrawn": "2024-01-01T00:00:00Z"},
        ],
    },
    "oldlib": {"info": {"version": "9.9"}, "vulnerabilities": []},
}


@pytest.fixture
def tool(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _load_tool()

    def fake_pip_audit(path: Path, service: str) -> tuple[list[dict[str, Any]], str]:
        if service == "osv":
            return [], "pip-audit -s osv failed: unreachable"
        return [
            {"name": "audited", "version": "3.0", "vulns": [{"id": "GHSA-x", "fix_versions": []}]},
            {"name": "goodlib", "skip_reason": "Dependency not found on PyPI"},
            {"name": "badlib", "skip_reason": "Dependency not found on PyPI"},
            {"name": "oldlib", "skip_reason": "Dependency not found on PyPI"},
            {"name": "pakr", "skip_reason": "Dependency not found on PyPI"},
        ], ""

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        name = url.rstrip("/").split("/")[-2]
        return io.BytesIO(json.dumps(PROJECT_JSON[name]).encode())

    monkeypatch.setattr(module, "run_pip_audit", fake_pip_audit)
    monkeypatch.setattr(module.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(module.socket, "getaddrinfo", lambda *a: [("ok",)])
    return module


def test_each_package_is_audited_or_named(tool: ModuleType, tmp_path: Path) -> None:
    env = _fake_env(
        tmp_path,
        {"audited": "3.0", "goodlib": "2.0", "badlib": "1.0", "oldlib": "1.0", "pakr": "0.1.0"},
    )
    findings, notes = tool.audit(env)
    by_name = {f.name: f for f in findings}
    assert set(by_name) == {"audited", "goodlib", "badlib", "oldlib"}  # pakr itself excluded
    assert by_name["audited"].vulns == ["GHSA-x"] and "pip-audit" in by_name["audited"].source
    assert by_name["goodlib"].vulns == [] and "latest release" in by_name["goodlib"].source
    assert by_name["badlib"].vulns == ["PYSEC-1"]  # the withdrawn advisory is dropped
    assert by_name["oldlib"].source == "" and "not the latest release (9.9)" in (
        by_name["oldlib"].why_not
    )
    assert any("osv" in note for note in notes)


def test_exit_status_says_vulnerable_or_unaudited(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["--env", str(_fake_env(tmp_path / "a", {"goodlib": "2.0"}))]) == 0
    assert tool.main(["--env", str(_fake_env(tmp_path / "b", {"oldlib": "1.0"}))]) == 2
    assert "NOT AUDITED" in capsys.readouterr().out
    assert tool.main(["--env", str(_fake_env(tmp_path / "c", {"badlib": "1.0"}))]) == 1
    assert tool.main(["--env", str(tmp_path / "missing")]) == 2
