"""The deploy recipes run for real: an image built, a Compose cluster in containers.

These tests need a Docker daemon and a built image; ``make deploy-test`` (tools/deploy_test.sh)
provides both, sets ``PAKR_DEPLOY_TEST=1`` and runs them. ``make test`` does not collect them
(image builds on the vfs storage driver are slow), so a plain ``pytest`` neither runs nor skips
them silently: they are simply not part of the default suite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PAKR_DEPLOY_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

REPORT: dict[str, Any] = {}


@pytest.fixture(scope="session")
def report() -> dict[str, Any]:
    """Figures the run measured (sizes, times); printed at the end and saved as JSON."""
    return REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section("deploy-test figures")
    for key, value in REPORT.items():
        terminalreporter.write_line(f"{key}: {value}")
    out = os.environ.get("PAKR_DEPLOY_REPORT")
    if out:
        path = Path(out)
        earlier = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**earlier, **REPORT}, indent=2) + "\n")
