"""The committed gRPC stubs equal a fresh generation from proto/pakr/v1/*.proto.

CI fails here when someone edits a .proto without running ``make proto`` (or edits a stub).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "tools" / "genproto.py")
    assert spec is not None and spec.loader is not None
    genproto = importlib.util.module_from_spec(spec)
    sys.modules["genproto"] = genproto
    spec.loader.exec_module(genproto)
    written = genproto.generate(tmp_path)
    assert written, "genproto produced no files"
    committed = ROOT / "proto" / "v1"
    fresh_names = sorted(p.name for p in written)
    committed_names = sorted(
        p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi") and "_pb2" in p.name
    )
    assert fresh_names == committed_names, "stub files differ; run `make proto`"
    for name in fresh_names:
        fresh = (tmp_path / name).read_text()
        assert (committed / name).read_text() == fresh, f"{name} drifted; run `make proto`"
