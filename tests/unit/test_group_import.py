"""Importing the group module leaves nothing behind in the temp directory.

rbcl extracts its bundled libsodium into the temp directory at import; pakr.proto.group
deletes that copy once it is loaded. Servers run with a small /tmp (a tmpfs in the Compose
file, a 16 MiB emptyDir on Kubernetes) and health probes start ``pakr`` every few seconds, so a
leaked ~3 MB file per start would fill it within a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_import_leaves_no_extracted_library(tmp_path: Path) -> None:
    code = (
        "import sys, pakr.proto.group as g; "
        "path = sys.modules['rbcl._sodium'].lib_path; "
        "assert path.startswith(sys.argv[1]), path; "
        "print(g.Scalar.random().encoded.hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(bytes.fromhex(done.stdout.strip())) == 32  # libsodium still works
    assert list(tmp_path.iterdir()) == []
