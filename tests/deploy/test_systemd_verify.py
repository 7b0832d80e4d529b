"""The systemd units, checked by systemd itself: ``systemd-analyze verify`` (syntax, directives,
the command exists and is executable) and ``systemd-analyze security --offline`` (the exposure
score of the sandboxing options). Debian's systemd is on every machine of this project; the
units are checked, not run (no systemd-managed service runs pakr here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/pakr/bin/pakr"  # where the README's recipe installs the CLI
# systemd-analyze security: 0 is the most locked down, 10 the least; "OK" ends below 2.0.
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _staged(tmp_path: Path, *, extra: str = "") -> list[Path]:
    """The units with ExecStart pointing at this checkout's pakr (verify checks the binary
    exists), the node template as instance ``node1``."""
    pakr = Path(sys.executable).parent / "pakr"
    assert pakr.exists()
    staged = []
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text()
        assert INSTALLED in text, f"{unit.name} does not run {INSTALLED}"
        text = text.replace(INSTALLED, str(pakr))
        if extra:
            text = text.replace("[Service]\n", f"[Service]\n{extra}\n", 1)
        name = unit.name.replace("@.service", "@node1.service")
        (tmp_path / name).write_text(text)
        staged.append(tmp_path / name)
    return staged


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True, text=True, timeout=60, check=False, cwd=units[0].parent,
    )  # fmt: skip


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _staged(tmp_path)
    assert len(units) == 2
    done = _verify(units)
    # verify exits 0 on some problems (an unknown key is only logged): any output is a failure.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    done = _verify(_staged(tmp_path, extra="ProtectSystems=strict"))
    assert "Unknown key" in done.stdout + done.stderr


@pytest.mark.parametrize("name", ["pakr-node@node1.service", "pakr-coordinator.service"])
def test_units_exposure_is_low(tmp_path: Path, name: str) -> None:
    _staged(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(tmp_path / name)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout
    # The options a network daemon holding keys needs, each judged safe by systemd itself.
    for option in ("NoNewPrivileges=", "PrivateDevices=", "PrivateTmp=", "ProtectSystem=",
                   "ProtectHome=", "PrivateMounts=", "RestrictSUIDSGID=", "LockPersonality=",
                   "RestrictNamespaces=~", "SystemCallFilter=~@privileged"):  # fmt: skip
        line = next((ln for ln in done.stdout.splitlines() if option in ln), "")
        assert line.lstrip().startswith("✓"), f"{name}: {option} {line!r}"
