"""The CLI's trust state: which operator key is pinned for a manifest, and serials seen.

The user commands refuse a manifest whose operator key is not pinned. The pin comes from
``--operator-key``, else ``PAKR_OPERATOR_KEY``, else the per-user pin file that
``pakr cluster up`` writes for the manifests it signs itself (keyed by the manifest's
absolute path), so the local-cluster commands work without flags while a manifest fetched
from elsewhere still needs an explicit pin. The pins live in the user's state directory,
not next to the manifest: a directory that could carry its own pin would pin nothing.

The state directory is ``$PAKR_STATE_DIR``, else ``$XDG_STATE_HOME/pakr``, else
``~/.local/state/pakr``; it also holds the CLI's manifest serial state (rollback protection,
on by default).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
from pathlib import Path

from pakr.proto.errors import ConfigError
from pakr.proto.files import write_private_file
from pakr.proto.manifest import INSECURE_UNPINNED, OperatorPin
from pakr.proto.tokens import parse_public_key

ENV_OPERATOR_KEY = "PAKR_OPERATOR_KEY"
ENV_STATE_DIR = "PAKR_STATE_DIR"
PINS_FILE = "operator-pins.json"
SERIALS_FILE = "manifest-serials.json"
PINS_FORMAT = "pakr-operator-pins/1"


def state_dir() -> Path:
    """Where the CLI keeps its pins and serial state."""
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "pakr"


def serial_state_path() -> Path:
    """The CLI's manifest serial state file."""
    return state_dir() / SERIALS_FILE


def _read_pins(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise ConfigError(f"operator pin file {path} is unreadable; fix or delete it") from None
    pins = document.get("pins") if isinstance(document, dict) else None
    if not isinstance(pins, dict):
        raise ConfigError(f"operator pin file {path} is damaged; fix or delete it")
    return {str(k): str(v) for k, v in pins.items()}


def record_pin(manifest_path: Path, operator_key: str) -> None:
    """Pin ``operator_key`` for the manifest at ``manifest_path`` (``pakr cluster up``)."""
    parse_public_key(operator_key)
    try:
        _record_pin(manifest_path, operator_key)
    except OSError as exc:
        raise ConfigError(
            f"cannot record the operator pin in {state_dir()}: {exc.strerror}"
            f" (set {ENV_STATE_DIR} to a writable directory)"
        ) from None


def _record_pin(manifest_path: Path, operator_key: str) -> None:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / PINS_FILE
    fd = os.open(directory / (PINS_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pins = _read_pins(path)
        key = str(manifest_path.resolve())
        if pins.get(key) == operator_key:
            return
        pins[key] = operator_key
        body = json.dumps({"format": PINS_FORMAT, "pins": pins}, indent=2, sort_keys=True)
        write_private_file(path, (body + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def recorded_pin(manifest_path: Path) -> str | None:
    """The pin ``pakr cluster up`` recorded for this manifest path, if any."""
    return _read_pins(state_dir() / PINS_FILE).get(str(manifest_path.resolve()))


def add_pin_arguments(parser: argparse.ArgumentParser) -> None:
    """``--operator-key``, ``--insecure-unpinned`` and ``--min-serial`` on a command."""
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument(
        "--operator-key",
        metavar="KEY",
        help=f"the manifest signer to trust (ed25519:...); default ${ENV_OPERATOR_KEY}, then the"
        " pin `pakr cluster up` recorded for this manifest",
    )
    pin.add_argument(
        "--insecure-unpinned",
        action="store_true",
        help="trust whichever key signed the manifest (dev clusters only)",
    )
    parser.add_argument(
        "--min-serial",
        type=int,
        default=0,
        metavar="N",
        help="refuse a manifest older than serial N (the CLI also remembers the highest seen)",
    )


def resolve_pin(args: argparse.Namespace) -> OperatorPin:
    """The operator pin for ``args.manifest``: flag, environment, recorded pin, or refusal."""
    if getattr(args, "insecure_unpinned", False):
        return INSECURE_UNPINNED
    explicit = getattr(args, "operator_key", None) or os.environ.get(ENV_OPERATOR_KEY)
    if explicit:
        return str(explicit)
    recorded = recorded_pin(Path(args.manifest))
    if recorded is not None:
        return recorded
    raise ConfigError(
        f"the manifest's operator key is not pinned: pass --operator-key ed25519:... or set"
        f" {ENV_OPERATOR_KEY} (`pakr cluster up` pins the manifests it writes)"
    )
