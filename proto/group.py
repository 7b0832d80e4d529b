"""The ristretto255 prime-order group: canonical scalars and elements over libsodium (``rbcl``).

Why a wrapper at all: libsodium's raw byte API has sharp edges that would otherwise leak into
every caller:

* there is no canonical-scalar check, so a wire scalar ``>= L`` would be silently reduced;
* ``is_valid_point`` accepts the identity, which is never a valid key, blinded element or share;
* ``scalarmult`` signals an identity result with a bare ``RuntimeError``;
* ``add``/``sub`` ignore decoding errors and turn a malformed point into zeros;
* ``is_valid_point`` ignores the top bit (byte 31 & 0x80): every element has a second,
  non-canonical encoding it accepts, and ``bytes(31) + b"\x80"`` is the identity in disguise
  (RFC 9496 §4.3.1 requires rejecting it).

:class:`Scalar` and :class:`Element` can only hold canonical, validated encodings, so once a
value has one of these types it is safe to feed to libsodium. Every failure surfaces as
:class:`~pakr.proto.errors.MalformedMessage`. Arithmetic on (possibly secret) scalars is done by
libsodium's constant-time scalar functions, never with Python integers.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import sys
import tempfile
from dataclasses import dataclass

import rbcl

from .errors import MalformedMessage
from .lengths import ELEMENT_LEN, SCALAR_LEN


def _unlink_extracted_libsodium() -> None:
    """Delete the copy of libsodium that importing rbcl wrote to the temp directory.

    rbcl writes its bundled libsodium to a new file in the temp directory at every import and
    dlopens it, but never deletes it. Once loaded the mapping outlives the file, so it goes: a
    server whose health probe runs ``pakr`` every few seconds would otherwise fill its small
    /tmp (a tmpfs or a size-limited emptyDir) with ~3 MB per run.
    """
    path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(path, str) and os.path.dirname(path) == tempfile.gettempdir():
        with contextlib.suppress(OSError):  # already gone: nothing leaks either way
            os.unlink(path)


_unlink_extracted_libsodium()

ORDER: int = 2**252 + 27742317777372353535851937790883648493
"""The prime order L of the ristretto255 group."""

_ZERO32 = bytes(32)
_ZERO_WIDE_TAIL = bytes(32)


# --- typed wrappers over the untyped rbcl functions -------------------------------------------


def _sc_reduce(wide: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_reduce(wide)
    return out


def _sc_add(a: bytes, b: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_add(a, b)
    return out


def _sc_sub(a: bytes, b: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_sub(a, b)
    return out


def _sc_mul(a: bytes, b: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_mul(a, b)
    return out


def _sc_neg(a: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_negate(a)
    return out


def _sc_invert(a: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_invert(a)
    return out


def _sc_random() -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_scalar_random()
    return out


def _pt_is_valid(p: bytes) -> bool:
    return bool(rbcl.crypto_core_ristretto255_is_valid_point(p))


def _pt_add(p: bytes, q: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_add(p, q)
    return out


def _pt_sub(p: bytes, q: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_sub(p, q)
    return out


def _pt_from_hash(h: bytes) -> bytes:
    out: bytes = rbcl.crypto_core_ristretto255_from_hash(h)
    return out


def _pt_mul(s: bytes, p: bytes) -> bytes:
    try:
        out: bytes = rbcl.crypto_scalarmult_ristretto255(s, p)
    except RuntimeError as exc:  # libsodium: the result would be the identity
        raise MalformedMessage("scalar multiplication yields the identity element") from exc
    return out


def _pt_base_mul(s: bytes) -> bytes:
    try:
        out: bytes = rbcl.crypto_scalarmult_ristretto255_base(s)
    except RuntimeError as exc:
        raise MalformedMessage("base multiplication yields the identity element") from exc
    return out


def _is_canonical_scalar(data: bytes) -> bool:
    """Constant-time canonicity check: ``data`` reduces to itself iff it is < L.

    Uses libsodium's reduction rather than ``int.from_bytes(data) < L`` so the check takes the
    same time for a secret scalar whatever its value.
    """
    return hmac.compare_digest(_sc_reduce(data + _ZERO_WIDE_TAIL), data)


# --- Scalar -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Scalar:
    """A canonical little-endian scalar mod L.

    Scalars are often secret (keys, shares, blinds), so the repr never shows the value and
    equality is constant-time. Constructing one directly validates length and canonicity
    (``MalformedMessage``); use :meth:`decode` for wire data, which can also reject zero.
    """

    encoded: bytes

    def __post_init__(self) -> None:
        data = self.encoded
        if not isinstance(data, bytes) or len(data) != SCALAR_LEN:
            raise MalformedMessage(f"a scalar must be {SCALAR_LEN} bytes")
        if not _is_canonical_scalar(data):
            raise MalformedMessage("scalar encoding is not canonical (>= group order)")

    @classmethod
    def _trusted(cls, data: bytes) -> Scalar:
        """Wrap a libsodium scalar output (always canonical) without re-validating it."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "encoded", data)
        return obj

    @classmethod
    def decode(cls, data: bytes, *, allow_zero: bool = False) -> Scalar:
        """Parse a scalar read off the wire or from storage.

        Raises ``MalformedMessage`` on a wrong length, a non-canonical encoding (>= L), or zero
        unless ``allow_zero``: zero is never a valid key, share or blind, and accepting it would
        let a peer force an identity result.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedMessage("a scalar must be bytes")
        scalar = cls(bytes(data))
        if not allow_zero and scalar.is_zero():
            raise MalformedMessage("scalar must not be zero")
        return scalar

    @classmethod
    def random(cls) -> Scalar:
        """A uniformly random non-zero scalar from libsodium's CSPRNG."""
        while True:
            data = _sc_random()
            if not hmac.compare_digest(data, _ZERO32):
                return cls._trusted(data)

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        """A scalar from a *public* integer (Shamir indices, small constants), reduced mod L.

        Python integer arithmetic is not constant-time: never pass a secret here.
        """
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("Scalar.from_int needs an int")
        return cls._trusted((value % ORDER).to_bytes(SCALAR_LEN, "little"))

    @classmethod
    def reduce(cls, wide: bytes) -> Scalar:
        """Reduce 64 uniform bytes mod L (RFC 9497 HashToScalar); the result may be zero."""
        if len(wide) != 64:
            raise ValueError("Scalar.reduce needs exactly 64 bytes")
        return cls._trusted(_sc_reduce(bytes(wide)))

    def __add__(self, other: Scalar) -> Scalar:
        if not isinstance(other, Scalar):
            return NotImplemented
        return Scalar._trusted(_sc_add(self.encoded, other.encoded))

    def __sub__(self, other: Scalar) -> Scalar:
        if not isinstance(other, Scalar):
            return NotImplemented
        return Scalar._trusted(_sc_sub(self.encoded, other.encoded))

    def __mul__(self, other: Scalar) -> Scalar:
        if not isinstance(other, Scalar):
            return NotImplemented
        return Scalar._trusted(_sc_mul(self.encoded, other.encoded))

    def __neg__(self) -> Scalar:
        return Scalar._trusted(_sc_neg(self.encoded))

    def invert(self) -> Scalar:
        """The multiplicative inverse mod L; ``MalformedMessage`` for zero (it has none)."""
        if self.is_zero():
            raise MalformedMessage("cannot invert the zero scalar")
        return Scalar._trusted(_sc_invert(self.encoded))

    def is_zero(self) -> bool:
        return hmac.compare_digest(self.encoded, _ZERO32)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        return hmac.compare_digest(self.encoded, other.encoded)

    def __hash__(self) -> int:
        return hash((Scalar, self.encoded))

    def __repr__(self) -> str:
        return "Scalar(<redacted>)"

    __str__ = __repr__


# --- Element ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Element:
    """A canonical ristretto255 encoding of a group element other than the identity.

    The identity is excluded on purpose: as a public key, blinded element, evaluation or
    combined share it always signals an attack or a bug (it makes every output predictable).
    """

    encoded: bytes

    def __post_init__(self) -> None:
        data = self.encoded
        if not isinstance(data, bytes) or len(data) != ELEMENT_LEN:
            raise MalformedMessage(f"a group element must be {ELEMENT_LEN} bytes")
        if data[31] & 0x80:
            raise MalformedMessage("non-canonical ristretto255 encoding (top bit set)")
        if hmac.compare_digest(data, _ZERO32):
            raise MalformedMessage("group element is the identity")
        if not _pt_is_valid(data):
            raise MalformedMessage("invalid or non-canonical ristretto255 encoding")

    @classmethod
    def _trusted(cls, data: bytes) -> Element:
        """Wrap a libsodium point output (always canonical); only the identity is checked."""
        if hmac.compare_digest(data, _ZERO32):
            raise MalformedMessage("group operation yields the identity element")
        obj = object.__new__(cls)
        object.__setattr__(obj, "encoded", data)
        return obj

    @classmethod
    def decode(cls, data: bytes) -> Element:
        """Parse an element off the wire: wrong length, invalid, non-canonical or identity
        encodings raise ``MalformedMessage``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedMessage("a group element must be bytes")
        return cls(bytes(data))

    @classmethod
    def generator(cls) -> Element:
        """The ristretto255 generator G."""
        return _GENERATOR

    @classmethod
    def base_mult(cls, k: Scalar) -> Element:
        """k·G; ``MalformedMessage`` if k is zero."""
        return cls._trusted(_pt_base_mul(k.encoded))

    @classmethod
    def from_uniform_bytes(cls, data: bytes) -> Element:
        """Map 64 uniform bytes to an element (libsodium ``from_hash``: no hashing inside)."""
        if len(data) != 64:
            raise ValueError("Element.from_uniform_bytes needs exactly 64 bytes")
        return cls._trusted(_pt_from_hash(bytes(data)))

    def __mul__(self, k: Scalar) -> Element:
        if not isinstance(k, Scalar):
            return NotImplemented
        return Element._trusted(_pt_mul(k.encoded, self.encoded))

    def __rmul__(self, k: Scalar) -> Element:
        return self.__mul__(k)

    def __add__(self, other: Element) -> Element:
        # Both operands are validated Elements, so libsodium's silent-zero failure mode in
        # add/sub cannot trigger; an identity result is still rejected.
        if not isinstance(other, Element):
            return NotImplemented
        return Element._trusted(_pt_add(self.encoded, other.encoded))

    def __sub__(self, other: Element) -> Element:
        if not isinstance(other, Element):
            return NotImplemented
        return Element._trusted(_pt_sub(self.encoded, other.encoded))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return hmac.compare_digest(self.encoded, other.encoded)

    def __hash__(self) -> int:
        return hash((Element, self.encoded))


_GENERATOR = Element._trusted(_pt_base_mul(Scalar.from_int(1).encoded))
