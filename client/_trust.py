"""How the SDK decides to trust a manifest: a pinned operator key and rollback protection.

A manifest names the nodes a client sends its password-derived requests to, so a client
must know who may sign one (the operator key, pinned by the application) and must not go
back to an older manifest once it has seen a newer one (an attacker replaying an old,
validly signed manifest could point it at nodes the operator has since retired, or at old
TLS and HPKE keys). :class:`SerialState` remembers the highest serial seen per operator key
in a small JSON file, shared safely by concurrent processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pakr.proto.errors import ConfigError
from pakr.proto.files import write_private_file
from pakr.proto.manifest import (
    INSECURE_UNPINNED,
    NOT_PINNED_MESSAGE,
    Manifest,
    OperatorPin,
    embedded_signer,
    load_manifest,
    read_document,
)

STATE_FORMAT = "pakr-manifest-serials/1"
ManifestSource = str | os.PathLike[str] | Mapping[str, Any]


class UnpinnedManifestWarning(UserWarning):
    """A client trusts a manifest whose signer nobody pinned (dev clusters only)."""


class SerialState:
    """The highest manifest serial seen per operator key, in a JSON file (0600).

    A missing file starts empty; an unreadable or malformed one is an error rather than a
    silent reset, which would re-open the rollback it exists to close.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot use manifest serial state {self.path}: {exc.strerror}"
                " (point it at a writable place, e.g. PAKR_STATE_DIR for the CLI)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, int]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(
                f"cannot read manifest serial state {self.path}: {exc.strerror}"
            ) from None
        try:
            document = json.loads(text)
            serials = document["serials"]
            if document.get("format") != STATE_FORMAT or not isinstance(serials, dict):
                raise ValueError
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in serials.values()):
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigError(
                f"manifest serial state {self.path} is damaged; restore it or delete it"
                " knowingly (rollback protection restarts from the next manifest)"
            ) from None
        return {str(k): int(v) for k, v in serials.items()}

    def highest(self, operator_key: str) -> int:
        """The highest serial recorded for ``operator_key`` (0 when none)."""
        with self._locked():
            return self._read().get(operator_key, 0)

    def record(self, operator_key: str, serial: int) -> None:
        """Remember ``serial`` if it is the highest seen for ``operator_key``."""
        with self._locked():
            serials = self._read()
            if serials.get(operator_key, 0) >= serial:
                return
            serials[operator_key] = serial
            body = json.dumps({"format": STATE_FORMAT, "serials": serials}, indent=2) + "\n"
            try:
                write_private_file(self.path, body.encode("utf-8"))
            except OSError as exc:
                raise ConfigError(
                    f"cannot write manifest serial state {self.path}: {exc.strerror}"
                ) from None


def load_trusted_manifest(
    source: ManifestSource,
    *,
    operator_key: OperatorPin | None,
    min_serial: int = 0,
    serial_state: str | os.PathLike[str] | SerialState | None = None,
) -> Manifest:
    """The manifest in ``source`` if the pinned operator signed it and it is not a rollback.

    ``operator_key`` is required: an ``ed25519:...`` public key, or ``INSECURE_UNPINNED``
    (warns). With ``serial_state`` the serial must be at least the highest one recorded for
    that key, and a newer one is recorded.
    """
    if operator_key is None:
        raise ConfigError(NOT_PINNED_MESSAGE)
    document = read_document(source)
    if operator_key is INSECURE_UNPINNED:
        warnings.warn(
            "pakr: the manifest's operator key is not pinned (INSECURE_UNPINNED); whoever"
            " supplies the manifest chooses the nodes. Pin operator_key outside dev clusters.",
            UnpinnedManifestWarning,
            stacklevel=3,
        )
        key = embedded_signer(document)
    else:
        assert isinstance(operator_key, str)
        key = operator_key
    state: SerialState | None
    if serial_state is None or isinstance(serial_state, SerialState):
        state = serial_state
    else:
        state = SerialState(serial_state)
    floor = max(min_serial, state.highest(key)) if state is not None else min_serial
    manifest = load_manifest(document, operator_key=operator_key, min_serial=floor)
    if state is not None:
        state.record(key, manifest.serial)
    return manifest
