"""Injectable randomness, so every protocol step is reproducible in tests.

Production code uses :data:`SYSTEM` (``os.urandom`` and libsodium). Tests and the vector
generator pass a :class:`DeterministicRandomness` seeded with a label; it must never be used
for real keys, which is why it lives behind an explicit constructor and not a default.
"""

from __future__ import annotations

import os
from typing import Protocol

from Crypto.Hash import SHAKE256

from pakr.proto.group import Scalar


class Randomness(Protocol):
    """Where a protocol step draws its random bytes and scalars."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        ...

    def scalar(self) -> Scalar:
        """Return a uniformly random non-zero scalar."""
        ...


class SystemRandomness:
    """The operating system's CSPRNG (``os.urandom``) and libsodium's scalar sampler."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def scalar(self) -> Scalar:
        return Scalar.random()


class DeterministicRandomness:
    """A SHAKE256 stream from a seed: reproducible test vectors, never real keys."""

    def __init__(self, seed: bytes) -> None:
        self._xof = SHAKE256.new(b"pakr/v1/test-randomness\x00" + seed)

    def bytes(self, n: int) -> bytes:
        return bytes(self._xof.read(n))

    def scalar(self) -> Scalar:
        while True:
            s = Scalar.reduce(self.bytes(64))
            if not s.is_zero():
                return s


SYSTEM: Randomness = SystemRandomness()
