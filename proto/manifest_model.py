"""The manifest's data (docs/protocol.md §2): nodes, node sets, the manifest, the operator key.

Frozen values and their document form; reading, checking, signing and loading a manifest is
:mod:`pakr.proto.manifest`, which re-exports every name here.
"""

from __future__ import annotations

import enum
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pakr.proto.errors import ConfigError
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import NodeRef
from pakr.proto.tokens import SigningKey

FORMAT = "pakr-manifest/1"
SIGNATURE_CONTEXT = b"pakr/v1/manifest\x00"
MAX_NODES = 255
MAX_DOCUMENT_BYTES = 1 << 20
DEFAULT_TTL_SECONDS = 365 * 24 * 3600


class Unpinned(enum.Enum):
    """The explicit, loud opt-out of operator-key pinning (dev clusters only)."""

    INSECURE_UNPINNED = "insecure-unpinned"


INSECURE_UNPINNED = Unpinned.INSECURE_UNPINNED
"""Pass as ``operator_key`` to trust whatever key signed the manifest: anyone who can hand
the client a manifest then chooses its nodes. Never in production."""

OperatorPin = str | Unpinned

NOT_PINNED_MESSAGE = (
    "no operator key pinned: pass the cluster operator's public key (ed25519:...), or"
    " INSECURE_UNPINNED for a dev cluster"
)


class OperatorKey(SigningKey):
    """The cluster operator's manifest-signing key (same key-file format as tenant keys)."""

    @classmethod
    def generate(cls, name: str = "operator", number: int = 1) -> OperatorKey:
        """A fresh random operator key."""
        return cls(name=name, number=number, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OperatorKey:
        """Read an operator key file."""
        key = SigningKey.load(path)
        return cls(name=key.name, number=key.number, private_key=key.private_key)


def cert_fingerprint(pem: str) -> bytes:
    """SHA-256 of a PEM certificate's DER encoding (what the manifest may pin instead)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigError("a node's tls_cert is not a PEM certificate") from exc
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


@dataclass(frozen=True, slots=True)
class ManifestNode:
    """One node as the client sees it: identity, Shamir index, address and pinned TLS cert."""

    node_id: bytes
    index: int
    address: str
    tls_cert_pem: str | None = field(default=None, repr=False)
    tls_cert_sha256: bytes | None = None
    # Register2's shares are sealed to it (required for current nodes; rotated by a new serial)
    hpke_public_key: HpkePublicKey | None = field(default=None, repr=False)
    # where browsers reach the node's web listener ("https://node1.example:8443"); optional
    web_origin: str | None = None

    @property
    def ref(self) -> NodeRef:
        """The protocol's view of this node."""
        return NodeRef(node_id=self.node_id, index=self.index)

    @property
    def id_hex(self) -> str:
        """The node id as 32 hex characters (token audience, JSON form)."""
        return self.node_id.hex()

    @property
    def insecure(self) -> bool:
        """Whether the manifest pins no certificate (plaintext; dev manifests only)."""
        return self.tls_cert_pem is None and self.tls_cert_sha256 is None

    def to_document(self) -> dict[str, Any]:
        """The node's JSON object inside the manifest."""
        document: dict[str, Any] = {
            "id": self.node_id.hex(),
            "index": self.index,
            "address": self.address,
            "tls_cert": self.tls_cert_pem,
            "tls_cert_sha256": None if self.tls_cert_sha256 is None else self.tls_cert_sha256.hex(),
            "hpke_public_key": None if self.hpke_public_key is None else self.hpke_public_key.text,
        }
        if self.web_origin is not None:  # absent, not null: older manifests verify unchanged
            document["web_origin"] = self.web_origin
        return document


@dataclass(frozen=True, slots=True)
class NodeSet:
    """An older node configuration clients may still recover from (users not yet migrated)."""

    threshold: int
    nodes: tuple[ManifestNode, ...]

    def to_document(self) -> dict[str, Any]:
        """JSON form."""
        return {"threshold": self.threshold, "nodes": [n.to_document() for n in self.nodes]}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified cluster manifest."""

    cluster_id: str
    serial: int
    issued_at: int
    expires_at: int
    threshold: int
    register_threshold: int
    dev: bool
    argon2: Argon2Params
    nodes: tuple[ManifestNode, ...]
    previous_configurations: tuple[NodeSet, ...] = ()

    @property
    def node_refs(self) -> tuple[NodeRef, ...]:
        """The nodes' protocol identities, in manifest order."""
        return tuple(n.ref for n in self.nodes)

    def node(self, node_id: bytes) -> ManifestNode:
        """The node with this id (``ConfigError`` when the manifest has none)."""
        for candidate in self.nodes:
            if candidate.node_id == node_id:
                return candidate
        raise ConfigError(f"node {node_id.hex()} is not in the manifest")

    def to_document(self) -> dict[str, Any]:
        """The unsigned JSON object that :func:`sign_manifest` signs."""
        return {
            "format": FORMAT,
            "cluster_id": self.cluster_id,
            "serial": self.serial,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "threshold": self.threshold,
            "register_threshold": self.register_threshold,
            "dev": self.dev,
            "argon2": {
                "memory_kib": self.argon2.memory_kib,
                "iterations": self.argon2.iterations,
                "parallelism": self.argon2.parallelism,
            },
            "nodes": [n.to_document() for n in self.nodes],
            "previous_configurations": [c.to_document() for c in self.previous_configurations],
        }
