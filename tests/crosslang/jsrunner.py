"""Running the TypeScript SDK from pytest: Node.js scripts under js/, secrets on stdin.

``js_ready()`` says why the TypeScript side cannot run here (no Node.js, no ``npm ci``), or
``None``. Tests skip with that reason, except under ``CI=true``, where a missing toolchain is
a failure: ``.ci/run`` installs Node.js and the npm packages, so CI must never skip silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"


def js_ready() -> str | None:
    """Why the TypeScript SDK cannot run here, or ``None`` when it can."""
    if shutil.which("node") is None:
        return "Node.js is not installed (.ci/run installs it; or apt-get install nodejs npm)"
    if not (JS / "node_modules" / "tsx").is_dir():
        return "js/node_modules is missing: run `npm ci` in js/ (make test does)"
    return None


def require_js() -> None:
    """Skip (or, in CI, fail) when the TypeScript side cannot run."""
    why = js_ready()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"cross-language tests cannot run in CI: {why}")
    pytest.skip(why)


def run_node(script: str, request: dict[str, Any], *, timeout: float = 120) -> dict[str, Any]:
    """Run ``js/<script>`` under tsx with ``request`` as JSON on stdin; its last JSON line."""
    done = subprocess.run(
        ["node", "--import", "tsx", script],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=JS,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise AssertionError(f"{script} failed ({done.returncode}): {done.stderr[-2000:]}")
    answer = json.loads(lines[-1])
    assert isinstance(answer, dict)
    return answer
