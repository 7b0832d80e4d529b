"""The throwaway-server fixture finds Debian's layout when initdb is not on PATH."""

from __future__ import annotations

import glob
import shutil

import pytest

from .pgserver import PostgresUnavailable, find_bin_dir


def test_debian_layout_is_found_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not debian:
        pytest.skip("no /usr/lib/postgresql/<v>/bin on this machine")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    found = find_bin_dir()
    assert (found / "initdb").exists() and (found / "pg_ctl").exists()
    assert str(found).startswith("/usr/lib/postgresql/")


def test_missing_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable, match="install Debian's postgresql"):
        find_bin_dir()
