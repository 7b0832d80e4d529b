"""The wheel: it builds, holds every package of the layout, and imports on its own.

The import check runs in a subprocess whose ``sys.path`` has the editable checkout removed, so
it proves the wheel (not the working tree) provides ``pakr``, ``pakr.proto``, ``pakr.node``
and ``pakr.coordinator``; the third-party dependencies come from the test environment.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_builds_and_imports(built_wheel: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, target = built_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "pakr/__init__.py",
        "pakr/py.typed",
        "pakr/proto/py.typed",
        "pakr/proto/v1/node_pb2.py",
        "pakr/proto/v1/node_pb2.pyi",
        "pakr/node/__init__.py",
        "pakr/node/store/__init__.py",
        "pakr/coordinator/cli/__init__.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert not any(name.startswith(("tests/", "bench/", "examples/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pakr = pakr.coordinator.entry:run" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    for extra in ("docs", "examples"):
        assert f"Provides-Extra: {extra}" in text
    assert 'Requires-Dist: kyber-py>=1.0; extra == "examples"' in text

    probe = (
        "import sys\n"
        "sys.path = [p for p in sys.path if '__editable__' not in p and p != '']\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "import pakr, pakr.proto, pakr.node, pakr.coordinator\n"
        "import pakr.proto.v1.node_pb2_grpc, pakr.coordinator.cli\n"
        f"assert pakr.__file__.startswith({str(target)!r}), pakr.__file__\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
