"""ristretto255 wrapper: canonical decoding, identity rejection, arithmetic, error mapping."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto.errors import MalformedMessage
from pakr.proto.group import ORDER, Element, Scalar
from pakr.proto.lengths import ELEMENT_LEN, SCALAR_LEN

# RFC 9496 §4.3: the ristretto255 generator's canonical encoding.
GENERATOR_HEX = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"

scalars = st.builds(lambda _: Scalar.random(), st.integers())
elements = st.builds(lambda _: Element.base_mult(Scalar.random()), st.integers())


def test_order_and_lengths() -> None:
    assert ORDER == 2**252 + 27742317777372353535851937790883648493
    assert SCALAR_LEN == ELEMENT_LEN == 32


def test_generator_encoding() -> None:
    assert Element.generator().encoded.hex() == GENERATOR_HEX
    assert Element.base_mult(Scalar.from_int(1)) == Element.generator()


@given(scalars)
def test_scalar_roundtrip(s: Scalar) -> None:
    assert Scalar.decode(s.encoded) == s
    assert hash(Scalar.decode(s.encoded)) == hash(s)


@given(elements)
def test_element_roundtrip(e: Element) -> None:
    assert Element.decode(e.encoded) == e
    assert hash(Element.decode(e.encoded)) == hash(e)


@pytest.mark.parametrize("value", [ORDER, ORDER + 1, 2**256 - 1, 2**255])
def test_non_canonical_scalars_rejected(value: int) -> None:
    with pytest.raises(MalformedMessage):
        Scalar.decode(value.to_bytes(32, "little"))


def test_largest_canonical_scalar_accepted() -> None:
    s = Scalar.decode((ORDER - 1).to_bytes(32, "little"))
    assert (s + Scalar.from_int(1)).is_zero()


def test_zero_scalar() -> None:
    with pytest.raises(MalformedMessage):
        Scalar.decode(bytes(32))
    assert Scalar.decode(bytes(32), allow_zero=True).is_zero()
    with pytest.raises(MalformedMessage):
        Scalar.from_int(0).invert()


def test_identity_rejected() -> None:
    with pytest.raises(MalformedMessage):
        Element.decode(bytes(32))


def test_non_canonical_element_rejected() -> None:
    # p = 2^255 - 19 encodes field element 0 non-canonically; all-ones is invalid too.
    p = 2**255 - 19
    for bad in (p.to_bytes(32, "little"), b"\xff" * 32, bytes([1]) + bytes(31)):
        with pytest.raises(MalformedMessage):
            Element.decode(bad)


def test_identity_in_disguise_rejected() -> None:
    """Issue 12 finding 1: libsodium 1.0.18 ignores the top bit, so ``bytes(31) + 0x80``
    passes its validity check and decodes to the identity."""
    import rbcl

    disguised = bytes(31) + b"\x80"
    assert rbcl.crypto_core_ristretto255_is_valid_point(disguised)  # the trap is real
    with pytest.raises(MalformedMessage, match="top bit"):
        Element.decode(disguised)


@given(elements)
def test_top_bit_encodings_rejected(e: Element) -> None:
    """Every element's second encoding (top bit set) is refused, never read as the element."""
    bad = e.encoded[:31] + bytes([e.encoded[31] | 0x80])
    with pytest.raises(MalformedMessage):
        Element.decode(bad)


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_wrong_lengths_rejected(n: int) -> None:
    with pytest.raises(MalformedMessage):
        Scalar.decode(b"\x01" * n)
    with pytest.raises(MalformedMessage):
        Element.decode(b"\x01" * n)


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=100))
def test_decoders_raise_only_malformed(data: bytes) -> None:
    for decode in (Scalar.decode, Element.decode):
        with contextlib.suppress(MalformedMessage):
            decode(data)


@settings(max_examples=300)
@given(st.binary(min_size=32, max_size=32))
def test_element_decoder_32_byte_fuzz(data: bytes) -> None:
    try:
        e = Element.decode(data)
    except MalformedMessage:
        return
    assert e.encoded == data


def test_scalar_repr_redacted() -> None:
    s = Scalar.random()
    assert repr(s) == "Scalar(<redacted>)"
    assert str(s) == "Scalar(<redacted>)"
    assert s.encoded.hex() not in repr(s)


@given(scalars, scalars, scalars)
def test_scalar_field_laws(a: Scalar, b: Scalar, c: Scalar) -> None:
    assert a + b == b + a
    assert a * (b + c) == a * b + a * c
    assert (a - b) + b == a
    assert (a + -a).is_zero()
    assert a * a.invert() == Scalar.from_int(1)
    # Cross-check against Python integers (fine in tests: nothing here is secret).
    ai, bi = (int.from_bytes(x.encoded, "little") for x in (a, b))
    assert int.from_bytes((a * b).encoded, "little") == ai * bi % ORDER
    assert int.from_bytes((a - b).encoded, "little") == (ai - bi) % ORDER


def test_from_int_reduces() -> None:
    assert Scalar.from_int(ORDER + 5) == Scalar.from_int(5)
    assert Scalar.from_int(-1) == -Scalar.from_int(1)


def test_reduce() -> None:
    wide = (ORDER + 7).to_bytes(64, "little")
    assert Scalar.reduce(wide) == Scalar.from_int(7)
    assert Scalar.reduce(bytes(64)).is_zero()
    with pytest.raises(ValueError):
        Scalar.reduce(bytes(32))


@given(scalars, scalars)
def test_group_laws(a: Scalar, b: Scalar) -> None:
    g = Element.generator()
    assert Element.base_mult(a) == g * a == a * g
    assert Element.base_mult(a) + Element.base_mult(b) == Element.base_mult(a + b)
    if a != b:
        assert Element.base_mult(a) - Element.base_mult(b) == Element.base_mult(a - b)
    assert (g * a) * b == (g * b) * a


def test_identity_results_raise_malformed() -> None:
    e = Element.base_mult(Scalar.random())
    zero = Scalar.from_int(0)
    with pytest.raises(MalformedMessage):
        e * zero
    with pytest.raises(MalformedMessage):
        Element.base_mult(zero)
    with pytest.raises(MalformedMessage):
        e - e
    with pytest.raises(MalformedMessage):
        e + e * -Scalar.from_int(1)


def test_from_uniform_bytes() -> None:
    e = Element.from_uniform_bytes(bytes(range(64)))
    assert Element.decode(e.encoded) == e
    with pytest.raises(ValueError):
        Element.from_uniform_bytes(bytes(32))


def test_random_scalars_distinct_and_non_zero() -> None:
    values = {Scalar.random().encoded for _ in range(200)}
    assert len(values) == 200
    assert bytes(32) not in values


def test_direct_construction_validates() -> None:
    with pytest.raises(MalformedMessage):
        Scalar(ORDER.to_bytes(32, "little"))
    with pytest.raises(MalformedMessage):
        Element(bytes(32))
