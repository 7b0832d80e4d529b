"""Signed cluster manifests: every §2 rule refuses with ConfigError, signatures bind all bytes."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from pakr.proto.errors import ConfigError
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.manifest import (
    INSECURE_UNPINNED,
    ManifestNode,
    NodeSet,
    OperatorKey,
    canonical_bytes,
    cert_fingerprint,
    load_manifest,
    new_manifest,
    sign_manifest,
    write_manifest,
)

NOW = 1_800_000_000


def _cert() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CERT = _cert()
HPKE = HpkePrivateKey.from_seed(bytes(32)).public


def nodes(n: int, *, tls: bool = True) -> list[ManifestNode]:
    return [
        ManifestNode(bytes([i]) * 16, i, f"127.0.0.1:{7000 + i}", CERT if tls else None, None, HPKE)
        for i in range(1, n + 1)
    ]


@pytest.fixture(scope="module")
def operator() -> OperatorKey:
    return OperatorKey.generate()


def signed(operator: OperatorKey, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "cluster_id": "test",
        "nodes": nodes(5),
        "threshold": 3,
        "argon2": DEV_ARGON2,
        "now": NOW,
    }
    args.update(kw)
    return sign_manifest(new_manifest(**args), operator)


def test_round_trip(tmp_path, operator: OperatorKey) -> None:  # type: ignore[no-untyped-def]
    doc = signed(operator)
    path = write_manifest(doc, tmp_path / "manifest.json")
    manifest = load_manifest(path, operator_key=operator.public_key_text, now=NOW + 1)
    assert manifest.threshold == 3 and manifest.register_threshold == 5
    assert [n.index for n in manifest.nodes] == [1, 2, 3, 4, 5]
    assert manifest.nodes[0].tls_cert_pem == CERT
    assert manifest.node(bytes([2]) * 16).address == "127.0.0.1:7002"
    assert load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED) == manifest


def test_tampering_detected(operator: OperatorKey) -> None:
    doc = signed(operator)
    for mutate in (
        lambda d: d["manifest"].__setitem__("threshold", 4),
        lambda d: d["manifest"]["nodes"][0].__setitem__("address", "10.0.0.1:1"),
        lambda d: d["manifest"]["argon2"].__setitem__("iterations", 3),
        lambda d: d["manifest"].__setitem__("serial", 2),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(ConfigError, match="signature is invalid"):
            load_manifest(bad, now=NOW, operator_key=INSECURE_UNPINNED)


def test_pinned_operator_key(operator: OperatorKey) -> None:
    other = OperatorKey.generate()
    doc = signed(other)
    with pytest.raises(ConfigError, match="different operator key"):
        load_manifest(doc, operator_key=operator.public_key_text, now=NOW)
    # A forger who swaps the embedded key still fails against the pinned one.
    doc["signature"]["public_key"] = operator.public_key_text
    with pytest.raises(ConfigError, match="signature is invalid"):
        load_manifest(doc, operator_key=operator.public_key_text, now=NOW)


def test_an_unpinned_load_is_refused(operator: OperatorKey) -> None:
    with pytest.raises(ConfigError, match="no operator key pinned"):
        load_manifest(signed(operator), now=NOW)


def test_expiry_and_rollback(operator: OperatorKey) -> None:
    doc = signed(operator, serial=4, ttl_seconds=100)
    load_manifest(doc, now=NOW + 99, min_serial=4, operator_key=INSECURE_UNPINNED)
    with pytest.raises(ConfigError, match="expired"):
        load_manifest(doc, now=NOW + 100, operator_key=INSECURE_UNPINNED)
    with pytest.raises(ConfigError, match="rollback"):
        load_manifest(doc, now=NOW, min_serial=5, operator_key=INSECURE_UNPINNED)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"threshold": 2}, "exceed half"),
        ({"threshold": 6}, "must be in"),
        ({"threshold": 1, "nodes": nodes(1)}, "only with"),
        ({"register_threshold": 2}, "register_threshold"),
        ({"argon2": Argon2Params(8192, 2, 1)}, "below the floor"),
        ({"argon2": Argon2Params(19456, 65, 1)}, "above the ceiling"),
        ({"nodes": [*nodes(3), ManifestNode(bytes([1]) * 16, 9, "h:1", CERT, None, HPKE)]}, "ids"),
        (
            {"nodes": [*nodes(3), ManifestNode(bytes([9]) * 16, 1, "h:1", CERT, None, HPKE)]},
            "indices",
        ),
        ({"nodes": nodes(3, tls=False)}, "plaintext"),
        (
            {"nodes": [*nodes(2), ManifestNode(bytes([9]) * 16, 256, "h:1", CERT, None, HPKE)]},
            "1..255",
        ),
    ],
)
def test_shape_rules(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"cluster_id": "c", "nodes": nodes(5), "threshold": 3}
    args["argon2"] = DEV_ARGON2
    args.update(kw)
    with pytest.raises(ConfigError, match=message):
        new_manifest(**args)


def test_dev_allows_threshold_one_and_plaintext(operator: OperatorKey) -> None:
    doc = signed(operator, nodes=nodes(1, tls=False), threshold=1, dev=True)
    manifest = load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED)
    assert manifest.dev and manifest.nodes[0].insecure


def test_fingerprint_pin(operator: OperatorKey) -> None:
    fp = cert_fingerprint(CERT)
    pinned = [ManifestNode(n.node_id, n.index, n.address, None, fp, HPKE) for n in nodes(3)]
    manifest = load_manifest(
        signed(operator, nodes=pinned, threshold=2), now=NOW, operator_key=INSECURE_UNPINNED
    )
    assert manifest.nodes[0].tls_cert_sha256 == fp
    wrong = [ManifestNode(n.node_id, n.index, n.address, CERT, bytes(32), HPKE) for n in nodes(3)]
    doc = signed(operator, nodes=nodes(3), threshold=2)
    doc["manifest"]["nodes"] = [n.to_document() for n in wrong]
    with pytest.raises(ConfigError):
        load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED)


def test_previous_configurations_checked(operator: OperatorKey) -> None:
    old = NodeSet(threshold=2, nodes=tuple(nodes(3)))
    manifest = load_manifest(
        signed(operator, previous_configurations=[old]), now=NOW, operator_key=INSECURE_UNPINNED
    )
    assert manifest.previous_configurations == (old,)
    with pytest.raises(ConfigError, match="previous_configurations"):
        new_manifest(
            cluster_id="c",
            nodes=nodes(3),
            threshold=2,
            argon2=DEV_ARGON2,
            previous_configurations=[NodeSet(threshold=1, nodes=tuple(nodes(3)))],
        )


def test_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read"):
        load_manifest(tmp_path / "nope.json", operator_key=INSECURE_UNPINNED)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_manifest(tmp_path / "bad.json", operator_key=INSECURE_UNPINNED)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_random_documents_refused_cleanly(value: object) -> None:
    for doc in (value, {"manifest": value, "signature": value}):
        if isinstance(doc, dict):
            with pytest.raises(ConfigError):
                load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED)


FIELDS = ["threshold", "serial", "dev", "argon2", "nodes", "format", "cluster_id"]


@given(st.sampled_from(FIELDS), json_values)
def test_random_field_values_refused_cleanly(field: str, value: object) -> None:
    """Even a validly signed document with garbage in a field raises only ConfigError."""
    operator = OperatorKey.generate()
    doc = signed(operator)
    doc["manifest"][field] = value
    signature = operator.sign(canonical_bytes(doc["manifest"]))
    doc["signature"]["value"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with contextlib.suppress(ConfigError):
        load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED)


def _with_origin(origins: list[str | None]) -> list[ManifestNode]:
    return [
        ManifestNode(n.node_id, n.index, n.address, CERT, None, HPKE, origin)
        for n, origin in zip(nodes(len(origins)), origins, strict=True)
    ]


def test_web_origin_signed_and_omitted_when_absent(operator: OperatorKey) -> None:
    """``web_origin`` is covered by the signature, and a node without one has no key at all
    (not null), so manifests signed before the field existed keep their exact bytes."""
    plain = signed(operator)
    assert all("web_origin" not in node for node in plain["manifest"]["nodes"])
    origins: list[str | None] = ["https://n1.example:8443", None, "https://n3.example"]
    doc = signed(operator, nodes=_with_origin(origins), threshold=2)
    assert "web_origin" not in doc["manifest"]["nodes"][1]
    manifest = load_manifest(doc, now=NOW, operator_key=operator.public_key_text)
    assert [n.web_origin for n in manifest.nodes] == origins
    bad = copy.deepcopy(doc)
    bad["manifest"]["nodes"][0]["web_origin"] = "https://evil.example:8443"
    with pytest.raises(ConfigError, match="signature is invalid"):
        load_manifest(bad, now=NOW, operator_key=operator.public_key_text)
    added = copy.deepcopy(doc)
    added["manifest"]["nodes"][1]["web_origin"] = "https://evil.example"
    with pytest.raises(ConfigError, match="signature is invalid"):
        load_manifest(added, now=NOW, operator_key=operator.public_key_text)


@pytest.mark.parametrize(
    "origin",
    [
        "https://n.example:8443/",
        "https://n.example/path",
        "HTTPS://n.example",
        "https://N.example",
        "https://n.example:443",
        "http://127.0.0.1:80",
        "ftp://n.example",
        "https://user@n.example",
        "https://n.example:0",
        "https://n.example:08443",
        "https://n.example:",
        "https://n.example?x=1",
        "n.example:8443",
        "",
    ],
)
def test_web_origin_must_be_a_canonical_origin(operator: OperatorKey, origin: str) -> None:
    with pytest.raises(ConfigError, match="web_origin"):
        new_manifest(
            cluster_id="c", nodes=_with_origin([origin, None, None]), threshold=2, argon2=DEV_ARGON2
        )


def test_plain_http_web_origin_only_in_dev(operator: OperatorKey) -> None:
    local = _with_origin(["http://127.0.0.1:18443", None, None])
    with pytest.raises(ConfigError, match="plain http"):
        new_manifest(cluster_id="c", nodes=local, threshold=2, argon2=DEV_ARGON2)
    doc = signed(operator, nodes=local, threshold=2, dev=True)
    assert load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED).nodes[0].web_origin == (
        "http://127.0.0.1:18443"
    )
    doc["manifest"]["nodes"][0]["web_origin"] = 7
    doc["signature"]["value"] = (
        base64.urlsafe_b64encode(operator.sign(canonical_bytes(doc["manifest"])))
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(ConfigError, match="web_origin"):
        load_manifest(doc, now=NOW, operator_key=INSECURE_UNPINNED)
