"""Everyday flags from the environment or a profile, as ``VAULT_ADDR`` does for vault.

A command's own flags win; then the environment (``PAKR_MANIFEST``, ``PAKR_TOKEN_KEY``,
``PAKR_TOKEN_CMD``, ``PAKR_TENANT``); then the profile named by ``--profile`` or
``PAKR_PROFILE``: a table of the TOML file ``$PAKR_CONFIG`` (default
``$XDG_CONFIG_HOME/pakr/profiles.toml``, i.e. ``~/.config/pakr/profiles.toml``)::

    [dev]
    manifest = "~/pakr/cluster/manifest.json"   # relative paths: from the profile file
    token_key = "~/pakr/cluster/tenants/dev.key"
    tenant = "dev"

A token source (``--token-key`` or ``--token-cmd``) is taken as a whole from the first place
that names one, so a flag never mixes with an environment variable of the other kind.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any

from pakr.proto.errors import ConfigError

ENV = {
    "manifest": "PAKR_MANIFEST",
    "token_key": "PAKR_TOKEN_KEY",
    "token_cmd": "PAKR_TOKEN_CMD",
    "tenant": "PAKR_TENANT",
}
PATH_KEYS = frozenset({"manifest", "token_key"})
PROFILE_KEYS = frozenset(ENV)


def profile_path() -> Path:
    """Where profiles are read from."""
    explicit = os.environ.get("PAKR_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pakr" / "profiles.toml"


def load_profile(name: str) -> dict[str, Any]:
    """Profile ``name``'s settings, paths resolved against the profile file's directory."""
    path = profile_path()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"profile {name!r}: cannot read {path}: {exc.strerror} (set PAKR_CONFIG to"
            " the profiles file)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = document.get(name)
    if not isinstance(table, dict):
        known = ", ".join(sorted(k for k, v in document.items() if isinstance(v, dict)))
        raise ConfigError(f"{path} has no profile [{name}] (profiles: {known or 'none'})")
    unknown = set(table) - PROFILE_KEYS
    if unknown:
        raise ConfigError(
            f"{path} [{name}]: unknown key(s) {', '.join(sorted(unknown))}; known:"
            f" {', '.join(sorted(PROFILE_KEYS))}"
        )
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path} [{name}]: {key} must be a string")
        if key in PATH_KEYS:
            settings[key] = path.parent / Path(value).expanduser()
        else:
            settings[key] = value
    return settings


def _environment() -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, variable in ENV.items():
        value = os.environ.get(variable)
        if value:
            settings[key] = Path(value).expanduser() if key in PATH_KEYS else value
    return settings


def apply_settings(args: argparse.Namespace) -> None:
    """Fill a command's unset everyday flags from the environment, then the profile.

    Only commands that declare the flag (``--manifest`` and so on) are touched; a command
    that needs one and finds it nowhere gets a ``ConfigError`` naming all three places.
    """
    wanted = [key for key in ENV if hasattr(args, key)]
    if not wanted:
        return
    name = getattr(args, "profile", None) or os.environ.get("PAKR_PROFILE")
    layers = [_environment()] + ([load_profile(name)] if name else [])
    token_keys = ("token_key", "token_cmd")
    if all(getattr(args, k, None) is None for k in token_keys if hasattr(args, k)):
        for layer in layers:
            found = {k: layer[k] for k in token_keys if k in layer and hasattr(args, k)}
            if len(found) > 1:
                raise ConfigError(
                    "both a token key and a token command are set (PAKR_TOKEN_KEY and"
                    " PAKR_TOKEN_CMD, or the profile's token_key and token_cmd); keep one"
                )
            if found:
                for key, value in found.items():
                    setattr(args, key, value)
                break
    for key in wanted:
        if key in token_keys or getattr(args, key) is not None:
            continue
        for layer in layers:
            if key in layer:
                setattr(args, key, layer[key])
                break
    required = getattr(args, "required_settings", ())
    for key in required:
        if key == "token" and all(getattr(args, k, None) is None for k in token_keys):
            raise ConfigError(
                "no token source: give --token-key FILE or --token-cmd CMD (or set"
                " PAKR_TOKEN_KEY / PAKR_TOKEN_CMD, or a profile's token_key / token_cmd)"
            )
        if key != "token" and getattr(args, key, None) is None:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} is required (or set {ENV[key]}, or {key} in a --profile)")
