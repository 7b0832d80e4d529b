"""RFC 9497 ristretto255-SHA512 (V)OPRF against the RFC's vectors, and RFC 9380 XMD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto import oprf
from pakr.proto.errors import MalformedMessage
from pakr.proto.group import Element, Scalar
from pakr.proto.oprf import Mode, Proof

VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc9497-ristretto255-sha512.json").read_text()
)

# RFC 9380 Appendix K.3, expand_message_xmd(SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256".
XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
XMD_VECTORS: list[tuple[bytes, int, str]] = [
    (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    (
        b"abcdef0123456789",
        0x20,
        "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58",
    ),
    (
        b"q128_" + b"q" * 128,
        0x20,
        "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3",
    ),
    (
        b"a512_" + b"a" * 512,
        0x20,
        "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4",
    ),
    (
        b"",
        0x80,
        "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921"
        "b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e"
        "0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
        "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
    ),
    (
        b"abc",
        0x80,
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
    ),
    (
        b"abcdef0123456789",
        0x80,
        "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04"
        "24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8"
        "f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f"
        "eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
    ),
    (
        b"q128_" + b"q" * 128,
        0x80,
        "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7"
        "317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af"
        "df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c"
        "a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
    ),
    (
        b"a512_" + b"a" * 512,
        0x80,
        "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2"
        "426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c"
        "c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5"
        "2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
    ),
]


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _as_list(value: str | list[str]) -> list[bytes]:
    return [_h(v) for v in (value if isinstance(value, list) else [value])]


def _cases(mode: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (suite, vector)
        for suite in VECTORS["suites"]
        if suite["mode"] == mode
        for vector in suite["vectors"]
    ]


def _id(case: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return f"{case[0]['modeName']}-{case[1]['name']}"


def test_vector_file_complete() -> None:
    assert "RFC 9497" in VECTORS["source"] and "allVectors.json" in VECTORS["source"]
    assert len(_cases(0)) == 2
    assert len(_cases(1)) == 3
    assert any(v["Batch"] == 2 for _, v in _cases(1))


@pytest.mark.parametrize(("msg", "length", "expected"), XMD_VECTORS)
def test_expand_message_xmd_rfc9380(msg: bytes, length: int, expected: str) -> None:
    assert oprf.expand_message_xmd(msg, XMD_DST, length).hex() == expected


def test_expand_message_xmd_limits() -> None:
    with pytest.raises(ValueError):
        oprf.expand_message_xmd(b"", XMD_DST, 255 * 64 + 1)
    with pytest.raises(ValueError):
        oprf.expand_message_xmd(b"", b"x" * 256, 32)


def test_context_string() -> None:
    assert oprf.context_string(Mode.OPRF) == b"OPRFV1-\x00-ristretto255-SHA512"
    assert oprf.context_string(Mode.VOPRF) == b"OPRFV1-\x01-ristretto255-SHA512"


@pytest.mark.parametrize("suite", VECTORS["suites"], ids=lambda s: s["modeName"])
def test_derive_key_pair(suite: dict[str, Any]) -> None:
    sk, pk = oprf.derive_key_pair(_h(suite["Seed"]), _h(suite["KeyInfo"]), Mode(suite["mode"]))
    assert sk.encoded.hex() == suite["skSm"]
    if "pkSm" in suite:
        assert pk.encoded.hex() == suite["pkSm"]


@pytest.mark.parametrize("case", _cases(0) + _cases(1), ids=_id)
def test_blind_evaluate_finalize(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    suite, vector = case
    mode = Mode(suite["mode"])
    sk = Scalar.decode(_h(suite["skSm"]))
    rows = zip(
        _as_list(vector["Input"]),
        _as_list(vector["Blind"]),
        _as_list(vector["BlindedElement"]),
        _as_list(vector["EvaluationElement"]),
        _as_list(vector["Output"]),
        strict=True,
    )
    for inp, blind_bytes, blinded_bytes, evaluated_bytes, output in rows:
        blind, blinded = oprf.blind(inp, blind=Scalar.decode(blind_bytes), mode=mode)
        assert blinded.encoded == blinded_bytes
        evaluated = oprf.blind_evaluate(sk, blinded)
        assert evaluated.encoded == evaluated_bytes
        assert oprf.finalize(inp, blind, evaluated, mode) == output
        assert oprf.evaluate(sk, inp, mode) == output


@pytest.mark.parametrize("case", _cases(1), ids=_id)
def test_voprf_proof(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    suite, vector = case
    sk = Scalar.decode(_h(suite["skSm"]))
    pk = Element.decode(_h(suite["pkSm"]))
    g = Element.generator()
    c_list = [Element.decode(b) for b in _as_list(vector["BlindedElement"])]
    d_list = [Element.decode(b) for b in _as_list(vector["EvaluationElement"])]
    assert len(c_list) == vector["Batch"]
    r = Scalar.decode(_h(vector["ProofRandomScalar"]))
    proof = oprf.generate_proof(sk, g, pk, c_list, d_list, r=r)
    assert proof.encode().hex() == vector["Proof"]
    decoded = Proof.decode(_h(vector["Proof"]))
    assert oprf.verify_proof(g, pk, c_list, d_list, decoded)

    # Tampering with anything makes verification fail (and never raise).
    one = Scalar.from_int(1)
    assert not oprf.verify_proof(g, pk, c_list, d_list, Proof(decoded.c + one, decoded.s))
    assert not oprf.verify_proof(g, pk, c_list, d_list, Proof(decoded.c, decoded.s + one))
    other = Element.base_mult(Scalar.random())
    assert not oprf.verify_proof(g, other, c_list, d_list, decoded)
    assert not oprf.verify_proof(g, pk, c_list, [other, *d_list[1:]], decoded)
    assert not oprf.verify_proof(g, pk, c_list, d_list, decoded, Mode.OPRF)
    zero = Scalar.from_int(0)
    assert not oprf.verify_proof(g, pk, c_list, d_list, Proof(zero, zero))
    assert not oprf.verify_proof(g, pk, c_list, d_list, Proof(decoded.c, zero))


def test_random_round_trip_with_fresh_key() -> None:
    sk = Scalar.random()
    pk = Element.base_mult(sk)
    blind, blinded = oprf.blind(b"password")
    evaluated = oprf.blind_evaluate(sk, blinded)
    proof = oprf.generate_proof(sk, Element.generator(), pk, [blinded], [evaluated])
    assert oprf.verify_proof(Element.generator(), pk, [blinded], [evaluated], proof)
    assert oprf.finalize(b"password", blind, evaluated) == oprf.evaluate(sk, b"password")
    assert oprf.finalize(b"password", blind, evaluated) != oprf.evaluate(sk, b"passwore")


def test_mismatched_batch_rejected_by_verify() -> None:
    e = Element.base_mult(Scalar.random())
    proof = Proof(Scalar.random(), Scalar.random())
    assert not oprf.verify_proof(e, e, [e], [], proof)
    assert not oprf.verify_proof(e, e, [], [], proof)


def test_hash_to_scalar_custom_dst() -> None:
    assert oprf.hash_to_scalar(b"x") != oprf.hash_to_scalar(b"x", dst=b"other")
    assert oprf.hash_to_scalar(b"x", Mode.OPRF) != oprf.hash_to_scalar(b"x", Mode.VOPRF)


def test_zero_blind_rejected() -> None:
    with pytest.raises(ValueError):
        oprf.blind(b"x", blind=Scalar.from_int(0))


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=100))
def test_proof_decode_raises_only_malformed(data: bytes) -> None:
    try:
        proof = Proof.decode(data)
    except MalformedMessage:
        return
    assert proof.encode() == data
