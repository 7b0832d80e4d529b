"""The short chaos soak of ``make test`` (issue 14): the same harness as ``make soak``.

``PAKR_SOAK_SECONDS`` sets the chaos time per store (default 60, the short form issue 14
asks for). The figures are printed, so a failing run shows its operations, kills and violations.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.soak.soak import Soak

SECONDS = float(os.environ.get("PAKR_SOAK_SECONDS", "60"))

pytestmark = pytest.mark.timeout(SECONDS + 240)


def _check(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, indent=2, default=str))
    assert figures["violations"] == []
    assert figures["max_down"] <= 2  # never more than n - t nodes down
    assert figures["kills"] + figures["sigstops"] > 0
    assert figures["outcomes"].get("recover:ok", 0) > 0


def test_soak_sqlite(tmp_path: Path) -> None:
    _check(Soak(tmp_path / "soak", store="sqlite", seconds=SECONDS, users_per_worker=6).run())


@pytest.mark.postgres
def test_soak_postgres(tmp_path: Path, postgres_server: Any) -> None:
    soak = Soak(tmp_path / "soak", store="postgres", seconds=SECONDS, users_per_worker=6)
    soak.pg = postgres_server
    _check(soak.run())
