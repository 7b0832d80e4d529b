"""examples/web in a real browser: headless Chromium (Debian's package) driven by
playwright-core runs the whole story against a local cluster's web listeners.

The page is bundled with esbuild (the operator key pinned in it) and served by the example's
own server on an origin of its own; the nodes' CORS rules (dev origins on loopback) let it call
them. Every step is asserted in js/test/browser/web-story.mjs; the screenshot of the signed-in
new device goes to docs/img/web-example.png (when missing, or with PAKR_UPDATE_SCREENSHOT=1).
Skipped without Chromium or Node.js, except under CI=true, where .ci/run installs both and a
skip would hide a broken setup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ClusterFactory
from tests.crosslang.jsrunner import JS, ROOT, js_ready

pytestmark = pytest.mark.timeout(300)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = ROOT / "docs" / "img" / "web-example.png"


def _require_browser() -> None:
    why = js_ready()
    if why is None and not Path(CHROMIUM).exists():
        why = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test cannot run in CI: {why}")
    pytest.skip(why)


def test_web_example_story_in_chromium(local_cluster: ClusterFactory, tmp_path: Path) -> None:
    _require_browser()
    cluster = local_cluster(nodes=3, threshold=2)
    assert all(node.get("web_origin") for node in json.loads(cluster.manifest_path.read_text())
               ["manifest"]["nodes"])  # fmt: skip
    dist = tmp_path / "dist"
    subprocess.run(
        ["node", "scripts/build-web.mjs", "--operator-key", cluster.operator_public_key(),
         "--outdir", str(dist)],
        cwd=JS, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "web" / "server.py"), "--cluster",
         str(cluster.dir), "--port", "0", "--dist", str(dist)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        shot = tmp_path / "web-example.png"
        done = subprocess.run(
            ["node", "test/browser/web-story.mjs", url, str(shot)],
            cwd=JS, capture_output=True, text=True, timeout=240,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert "4 guess(es) left" in seen["wrong"]
        assert seen["message"].startswith("Welcome, alice.")
        assert seen["locked"].startswith("Locked out")
        assert shot.stat().st_size > 10_000
        # The docs' copy is written when missing or asked for, so `make test` leaves the
        # working tree as it found it (each run's keys, and so its pixels, differ).
        if not SCREENSHOT.exists() or os.environ.get("PAKR_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    finally:
        server.terminate()
        server.wait(timeout=10)
