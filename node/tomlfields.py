"""Typed reads and writes of TOML tables for pakr's config files (``node.toml``,
``coordinator.toml``).

Each reader checks one key's type and range and raises ``ConfigError`` naming the key as
``table.key``, so an operator sees exactly what to fix; unknown keys are refused rather than
ignored, because a misspelt security setting must not silently fall back to its default.
Writing goes through :func:`dumps` (tomli-w), never string formatting, so every value is
quoted and escaped by a TOML writer and a config read back equals the one written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from pakr.proto.errors import ConfigError


def table(doc: Mapping[str, Any], name: str, *, required: bool = False) -> Mapping[str, Any]:
    """The table ``[name]`` (empty when absent unless ``required``)."""
    value = doc.get(name)
    if value is None:
        if required:
            raise ConfigError(f"[{name}] table is missing")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a table")
    return value


def known(table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    """Refuse keys outside ``allowed`` (a typo must not fall back to a default)."""
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{prefix}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )


def string(table: Mapping[str, Any], key: str, prefix: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{prefix}.{key} is required")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{prefix}.{key} must be a non-empty string")
    return value


def integer(
    table: Mapping[str, Any], key: str, prefix: str, default: int, low: int, high: int
) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{prefix}.{key} must be an integer {low}..{high}, got {value!r}")
    return value


def number(table: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{prefix}.{key} must be a number >= 0, got {value!r}")
    return float(value)


def path_in(base: Path, value: str) -> Path:
    """``value`` as a path, relative ones resolved against ``base`` (the config's folder)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def tls_paths(
    doc: Mapping[str, Any], base: Path, *, insecure: bool, insecure_key: str
) -> tuple[Path | None, Path | None]:
    """The ``[tls]`` table's ``cert`` and ``key`` paths, both required unless ``insecure``.

    ``insecure_key`` names the switch in the message (``node.insecure``, ``coordinator.insecure``).
    """
    tls = table(doc, "tls")
    known(tls, "tls", {"cert", "key"})
    cert = path_in(base, string(tls, "cert", "tls")) if "cert" in tls else None
    key = path_in(base, string(tls, "key", "tls")) if "key" in tls else None
    if not insecure and (cert is None or key is None):
        raise ConfigError(f"tls.cert and tls.key are required unless {insecure_key} = true")
    return cert, key


def path_text(path: Path, base: Path, root: Path | None = None) -> str:
    """How a config file in ``base`` writes ``path``: relative to ``base`` when the path lies
    inside ``root`` (default ``base``), so that directory can be moved whole; else absolute."""
    inside = root if root is not None else base
    if path.is_absolute() and not path.resolve().is_relative_to(inside.resolve()):
        return str(path)
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def dumps(doc: Mapping[str, Any], header: str) -> str:
    """The TOML text of ``doc``, after ``header`` as a comment line."""
    return f"# {header}\n" + tomli_w.dumps(doc)
