"""The signed cluster manifest (docs/protocol.md §2): which nodes exist and how to reach them.

The manifest is the client's root of trust for a cluster: node ids and Shamir indices (bound
into every signed OPRF key), addresses, the pinned TLS certificates, the threshold and the
Argon2id parameters for new registrations. The operator signs it with Ed25519 over a
domain-separated canonical JSON encoding, so whitespace or key order never matter and a
manifest signature can never be confused with any other signature the operator makes.

Document shape::

    {"manifest": {"format": "pakr-manifest/1", "cluster_id": ..., "serial": 3, ...},
     "signature": {"alg": "Ed25519", "public_key": "ed25519:...", "value": "<base64url>"}}

Loading checks every rule of §2 and raises ``ConfigError`` naming what is wrong.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pakr.proto import base64url
from pakr.proto.errors import ConfigError, MalformedMessage, WeakParameters
from pakr.proto.hostport import split_host_port
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.manifest_model import (
    DEFAULT_TTL_SECONDS as DEFAULT_TTL_SECONDS,
)
from pakr.proto.manifest_model import (
    FORMAT as FORMAT,
)
from pakr.proto.manifest_model import (
    INSECURE_UNPINNED as INSECURE_UNPINNED,
)
from pakr.proto.manifest_model import (
    MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES,
)
from pakr.proto.manifest_model import (
    MAX_NODES as MAX_NODES,
)
from pakr.proto.manifest_model import (
    NOT_PINNED_MESSAGE as NOT_PINNED_MESSAGE,
)
from pakr.proto.manifest_model import (
    SIGNATURE_CONTEXT as SIGNATURE_CONTEXT,
)
from pakr.proto.manifest_model import (
    Manifest as Manifest,
)
from pakr.proto.manifest_model import (
    ManifestNode as ManifestNode,
)
from pakr.proto.manifest_model import (
    NodeSet as NodeSet,
)
from pakr.proto.manifest_model import (
    OperatorKey as OperatorKey,
)
from pakr.proto.manifest_model import (
    OperatorPin as OperatorPin,
)
from pakr.proto.manifest_model import (
    Unpinned as Unpinned,
)
from pakr.proto.manifest_model import (
    cert_fingerprint as cert_fingerprint,
)
from pakr.proto.messages import NODE_ID_LEN
from pakr.proto.shamir import MAX_INDEX, MIN_INDEX
from pakr.proto.tokens import SigningKey, parse_public_key


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes the operator signs: a context prefix and sorted, compact JSON."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SIGNATURE_CONTEXT + body.encode("utf-8")


def sign_manifest(manifest: Manifest, key: SigningKey) -> dict[str, Any]:
    """Validate ``manifest`` and return the signed document to publish as ``manifest.json``."""
    check_manifest(manifest)
    document = manifest.to_document()
    signature = key.sign(canonical_bytes(document))
    return {
        "manifest": document,
        "signature": {
            "alg": "Ed25519",
            "public_key": key.public_key_text,
            "value": base64url.encode(signature),
        },
    }


def write_manifest(document: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a signed document atomically (readers never see half a manifest)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


# -- parsing -------------------------------------------------------------------------------------


MAX_INTEGER = 2**53 - 1
"""The largest integer a manifest may hold: every JSON implementation (JavaScript's doubles
included) must read it exactly, or a client could not re-canonicalise what was signed."""


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise ConfigError(f"manifest {where}{key} must be an integer from 0 to 2^53 - 1")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"manifest {where}{key} must be a non-empty string")
    return value


def _parse_node(obj: Any, where: str) -> ManifestNode:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"manifest {where} must be an object")
    id_hex = _str(obj, "id", where)
    try:
        node_id = bytes.fromhex(id_hex)
    except ValueError as exc:
        raise ConfigError(f"manifest {where}id must be hex") from exc
    if len(node_id) != NODE_ID_LEN or id_hex != node_id.hex():
        raise ConfigError(f"manifest {where}id must be 32 lowercase hex characters")
    index = _int(obj, "index", where)
    address = _str(obj, "address", where)
    split_host_port(address, f"manifest {where}address", listen=False)
    pem = obj.get("tls_cert")
    if pem is not None and not isinstance(pem, str):
        raise ConfigError(f"manifest {where}tls_cert must be a PEM string or null")
    fp_hex = obj.get("tls_cert_sha256")
    fingerprint: bytes | None = None
    if fp_hex is not None:
        try:
            fingerprint = bytes.fromhex(fp_hex) if isinstance(fp_hex, str) else None
        except ValueError:
            fingerprint = None
        if fingerprint is None or len(fingerprint) != 32:
            raise ConfigError(f"manifest {where}tls_cert_sha256 must be 64 hex characters")
    if pem is not None:
        actual = cert_fingerprint(pem)
        if fingerprint is not None and actual != fingerprint:
            raise ConfigError(f"manifest {where}tls_cert does not match its tls_cert_sha256")
    hpke_text = obj.get("hpke_public_key")
    hpke_key: HpkePublicKey | None = None
    if hpke_text is not None:
        if not isinstance(hpke_text, str):
            raise ConfigError(f"manifest {where}hpke_public_key must be a base64url string")
        try:
            hpke_key = HpkePublicKey.from_text(hpke_text, f"manifest {where}hpke_public_key")
        except MalformedMessage as exc:
            raise ConfigError(str(exc)) from None
    web_origin = obj.get("web_origin")
    if web_origin is not None:
        web_origin = parse_web_origin(web_origin, f"manifest {where}web_origin")
    return ManifestNode(node_id, index, address, pem, fingerprint, hpke_key, web_origin)


def parse_web_origin(value: Any, where: str) -> str:
    """A browser origin exactly as a browser serialises it: ``scheme://host[:port]``, scheme
    http or https, lowercase, no path, query, user info or default port (an origin compared
    byte for byte, by a browser's CORS check and by the TS SDK, must have one spelling)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be an origin like https://node.example:8443")
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    canonical = f"{parts.scheme}://{parts.netloc}"
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    if (
        default_port is None
        or not parts.hostname
        or port in (-1, 0, default_port)
        or (port is not None and not parts.netloc.endswith(f":{port}"))
        or value != canonical
        or value != value.lower()
        or "@" in parts.netloc
        or value.endswith(":")
    ):
        raise ConfigError(
            f"{where} must be an origin like https://node.example:8443 (lowercase, no path,"
            f" no default port), not {value!r}"
        )
    return value


def _parse_nodes(value: Any, where: str) -> tuple[ManifestNode, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"manifest {where}nodes must be a non-empty list")
    return tuple(_parse_node(item, f"{where}nodes[{i}].") for i, item in enumerate(value))


def check_shape(
    n: int,
    threshold: int,
    *,
    dev: bool,
    register_threshold: int | None = None,
    subject: str = "manifest ",
) -> None:
    """The rules on n, t and r (docs/protocol.md §2), for a manifest or a cluster about to be made.

    ``subject`` starts each message ("manifest ", "cluster ").
    """
    if not 1 <= n <= MAX_NODES:
        raise ConfigError(f"{subject}has {n} nodes; 1..{MAX_NODES} are allowed")
    if not 1 <= threshold <= n:
        raise ConfigError(f"{subject}threshold {threshold} must be in 1..{n}")
    if 2 * threshold <= n:
        raise ConfigError(
            f"{subject}threshold {threshold} must exceed half of the {n} nodes "
            f"(so at most one version can be held by t nodes): use {n // 2 + 1}..{n}"
        )
    if threshold < 2 and not dev:
        raise ConfigError(f'{subject}threshold 1 is allowed only with "dev": true')
    if register_threshold is not None and not threshold <= register_threshold <= n:
        raise ConfigError(
            f"{subject}register_threshold {register_threshold} must be in {threshold}..{n}"
        )


def _check_node_set(nodes: Sequence[ManifestNode], threshold: int, dev: bool, where: str) -> None:
    n = len(nodes)
    check_shape(n, threshold, dev=dev, subject=f"manifest {where}")
    ids = [node.node_id for node in nodes]
    if len(set(ids)) != n:
        raise ConfigError(f"manifest {where}node ids must be unique")
    indices = [node.index for node in nodes]
    if len(set(indices)) != n:
        raise ConfigError(f"manifest {where}node indices must be unique")
    for node in nodes:
        if not MIN_INDEX <= node.index <= MAX_INDEX:
            raise ConfigError(f"manifest {where}node index {node.index} must be in 1..255")
        if node.insecure and not dev:
            raise ConfigError(
                f"manifest {where}node {node.id_hex} pins no TLS certificate; "
                "plaintext nodes are allowed only in dev manifests"
            )
        if node.web_origin is not None:
            parse_web_origin(node.web_origin, f"manifest {where}node {node.id_hex} web_origin")
            if node.web_origin.startswith("http:") and not dev:
                raise ConfigError(
                    f"manifest {where}node {node.id_hex} web_origin is plain http; browsers"
                    " reach production nodes over https (http is for dev manifests only)"
                )


def check_manifest(manifest: Manifest) -> None:
    """Every shape rule of docs/protocol.md §2 that needs no clock or signature."""
    if manifest.serial < 1:
        raise ConfigError("manifest serial must be >= 1")
    if manifest.expires_at <= manifest.issued_at:
        raise ConfigError("manifest expires_at must be after issued_at")
    _check_node_set(manifest.nodes, manifest.threshold, manifest.dev, "")
    for node in manifest.nodes:
        if node.hpke_public_key is None:
            raise ConfigError(
                f"manifest node {node.id_hex} has no hpke_public_key (protocol 2 seals"
                " Register2 to it); run `pakr node hpke-keygen` there and re-create the manifest"
            )
    check_shape(
        len(manifest.nodes),
        manifest.threshold,
        dev=manifest.dev,
        register_threshold=manifest.register_threshold,
    )
    try:
        manifest.argon2.check()
    except WeakParameters as exc:
        raise ConfigError(f"manifest {exc}") from exc
    for i, previous in enumerate(manifest.previous_configurations):
        _check_node_set(
            previous.nodes, previous.threshold, manifest.dev, f"previous_configurations[{i}]."
        )


def parse_manifest(document: Mapping[str, Any]) -> Manifest:
    """The unsigned manifest object → :class:`Manifest`, checking every shape rule."""
    if document.get("format") != FORMAT:
        raise ConfigError(f"manifest format must be {FORMAT!r}")
    dev = document.get("dev", False)
    if not isinstance(dev, bool):
        raise ConfigError("manifest dev must be true or false")
    argon = document.get("argon2")
    if not isinstance(argon, Mapping):
        raise ConfigError("manifest argon2 must be an object")
    params = Argon2Params(
        memory_kib=_int(argon, "memory_kib", "argon2."),
        iterations=_int(argon, "iterations", "argon2."),
        parallelism=_int(argon, "parallelism", "argon2."),
    )
    nodes = _parse_nodes(document.get("nodes"), "")
    previous_raw = document.get("previous_configurations", [])
    if not isinstance(previous_raw, list):
        raise ConfigError("manifest previous_configurations must be a list")
    previous: list[NodeSet] = []
    for i, item in enumerate(previous_raw):
        where = f"previous_configurations[{i}]."
        if not isinstance(item, Mapping):
            raise ConfigError(f"manifest {where[:-1]} must be an object")
        previous.append(
            NodeSet(_int(item, "threshold", where), _parse_nodes(item.get("nodes"), where))
        )
    threshold = _int(document, "threshold", "")
    register_threshold = (
        _int(document, "register_threshold", "") if "register_threshold" in document else len(nodes)
    )
    manifest = Manifest(
        cluster_id=_str(document, "cluster_id", ""),
        serial=_int(document, "serial", ""),
        issued_at=_int(document, "issued_at", ""),
        expires_at=_int(document, "expires_at", ""),
        threshold=threshold,
        register_threshold=register_threshold,
        dev=dev,
        argon2=params,
        nodes=nodes,
        previous_configurations=tuple(previous),
    )
    check_manifest(manifest)
    return manifest


def read_document(source: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    """A signed manifest document from a path (at most 1 MiB of JSON) or as given."""
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"manifest {path} is larger than 1 MiB")
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"manifest {path} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"manifest {path} is not a JSON object")
    return document


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def embedded_signer(document: Mapping[str, Any]) -> str:
    """The public key a signed document names as its signer (not yet verified)."""
    signature = document.get("signature")
    embedded = signature.get("public_key") if isinstance(signature, Mapping) else None
    if not isinstance(embedded, str):
        raise ConfigError("manifest signature public_key is missing")
    return embedded


def load_manifest(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    operator_key: OperatorPin | None = None,
    now: float | None = None,
    min_serial: int = 0,
) -> Manifest:
    """Read, verify and check a signed manifest (a path or the parsed JSON document).

    ``operator_key`` (``ed25519:...``) is the pinned operator who must have signed it: the
    key embedded in a document proves only that someone signed it, so a manifest for the same
    cluster re-signed by anyone (naming their own nodes) would pass. Omitting it is refused;
    ``INSECURE_UNPINNED`` accepts the embedded key (dev clusters, inspection tools).
    ``min_serial`` refuses a rollback to an older manifest than one already seen.
    """
    if operator_key is None:
        raise ConfigError(NOT_PINNED_MESSAGE)
    document = read_document(source)
    body = document.get("manifest")
    signature = document.get("signature")
    if not isinstance(body, Mapping) or not isinstance(signature, Mapping):
        raise ConfigError("a signed manifest has a 'manifest' and a 'signature' object")
    if signature.get("alg") != "Ed25519":
        raise ConfigError("manifest signature alg must be Ed25519")
    embedded = embedded_signer(document)
    public_key = parse_public_key(embedded if isinstance(operator_key, Unpinned) else operator_key)
    if _raw(parse_public_key(embedded)) != _raw(public_key):
        raise ConfigError("manifest is signed by a different operator key than the pinned one")
    value = signature.get("value")
    try:
        raw = base64url.decode(str(value))
    except ValueError as exc:
        raise ConfigError("manifest signature value is not base64url") from exc
    try:
        public_key.verify(raw, canonical_bytes(body))
    except InvalidSignature as exc:
        raise ConfigError("manifest signature is invalid: it was altered or not signed") from exc
    manifest = parse_manifest(body)
    current = time.time() if now is None else now
    if current >= manifest.expires_at:
        raise ConfigError("manifest has expired: ask the operator for a fresh one")
    if manifest.serial < min_serial:
        raise ConfigError(
            f"manifest serial {manifest.serial} is older than serial {min_serial} already seen"
            " (a rollback?); get the current manifest from the operator"
        )
    return manifest


def new_manifest(
    *,
    cluster_id: str,
    nodes: Sequence[ManifestNode],
    threshold: int,
    register_threshold: int | None = None,
    argon2: Argon2Params,
    dev: bool = False,
    serial: int = 1,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    previous_configurations: Sequence[NodeSet] = (),
) -> Manifest:
    """Build and check a manifest for signing (``pakr manifest create``, the local cluster)."""
    issued = int(time.time() if now is None else now)
    manifest = Manifest(
        cluster_id=cluster_id,
        serial=serial,
        issued_at=issued,
        expires_at=issued + ttl_seconds,
        threshold=threshold,
        register_threshold=len(nodes) if register_threshold is None else register_threshold,
        dev=dev,
        argon2=argon2,
        nodes=tuple(nodes),
        previous_configurations=tuple(previous_configurations),
    )
    check_manifest(manifest)
    return manifest
