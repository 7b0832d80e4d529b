"""deploy/monitoring: the Prometheus alert rules and the Grafana dashboard.

The rules are checked by Prometheus's own ``promtool`` (Debian's ``prometheus`` package;
``.ci/run`` installs it): syntax with ``check rules``, behaviour with ``test rules`` (each
alert fires on the series that should trigger it). The dashboard is checked against the
shape Grafana imports (schema fields, unique ids, a 24-column grid without overlaps, targets
bound to the datasource variable), every expression must parse (``promtool`` again, as
recording rules) and name only metrics pakr exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pakr.coordinator.service import Metrics
from pakr.node.metrics import NodeMetrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "pakr-alerts.yml"
DASHBOARD = MONITORING / "pakr-dashboard.json"
PANEL_TYPES = {"row", "stat", "timeseries", "table", "gauge", "bargauge", "text"}
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "time", "or", "and", "offset",
    "le", "without", "max", "min", "avg", "up",
}  # fmt: skip


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *argv], capture_output=True, text=True, timeout=60, cwd=MONITORING
    )


def exported_metrics() -> set[str]:
    """Every series name pakr's registries expose (counters with _total, histograms' parts)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for registry in (NodeMetrics().registry, Metrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    checked = _run("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = _run("test", "rules", "pakr-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alerts_cover_what_operators_need() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {
        "PakrNodeDown",
        "PakrGuessesSpike",
        "PakrLockoutSpike",
        "PakrStorageErrors",
        "PakrCertificateExpiresSoon",
        "PakrManifestExpiresSoon",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        _assert_known_metrics(rule["expr"])


def _assert_known_metrics(expr: str) -> None:
    exported = exported_metrics()
    without_strings = re.sub(r'"[^"]*"', "", re.sub(r"\{[^}]*\}", "", expr))
    for name in re.findall(r"\b[a-z_][a-z0-9_]*\b", without_strings):
        if name in PROMQL_WORDS or not name.startswith("pakr_"):
            continue
        assert name in exported, f"{name} is not a metric pakr exports ({expr})"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard["panels"])


def test_dashboard_schema() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for key, kind in (
        ("title", str), ("uid", str), ("schemaVersion", int), ("panels", list),
        ("templating", dict), ("time", dict), ("tags", list),
    ):  # fmt: skip
        assert isinstance(dashboard.get(key), kind), key
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            _assert_known_metrics(target["expr"])


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard) if p["type"] != "row" for t in p["targets"]]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
