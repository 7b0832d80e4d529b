"""Read the key-exchange group of a TLS 1.3 handshake from the bytes on the wire.

A passive observer sees the ClientHello and ServerHello in the clear; only they say which
group the two ends agreed on (RFC 8446 §4.1.2-4.1.4, §4.2.7-4.2.8). This module parses those
two messages out of the first bytes of each direction of a TCP connection, so a test can hold
a real client and a real server to a group without trusting either side's own report.
Pure and standard-library only: ``tools/grpcio_group_probe.py`` also uses it in a bare venv.
"""

from __future__ import annotations

from dataclasses import dataclass

X25519MLKEM768 = 0x11EC
X25519 = 0x001D
GROUP_NAMES = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    X25519: "X25519",
    0x001E: "X448",
    0x0200: "MLKEM768",
    0x11EB: "SecP256r1MLKEM768",
    X25519MLKEM768: "X25519MLKEM768",
    0x6399: "X25519Kyber768Draft00",
}
# X25519MLKEM768 key shares: ML-KEM-768 encapsulation key (1184) or ciphertext (1088),
# each followed by a 32-byte X25519 share (draft-ietf-tls-ecdhe-mlkem).
HYBRID_CLIENT_SHARE_LEN = 1184 + 32
HYBRID_SERVER_SHARE_LEN = 1088 + 32

_HANDSHAKE, _CHANGE_CIPHER_SPEC = 22, 20
_CLIENT_HELLO, _SERVER_HELLO = 1, 2
_EXT_SUPPORTED_GROUPS, _EXT_SUPPORTED_VERSIONS, _EXT_KEY_SHARE = 10, 43, 51
# A ServerHello with this random is a HelloRetryRequest (RFC 8446 §4.1.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


class TlsParseError(ValueError):
    """The bytes are not the TLS handshake the parser expected."""


def group_name(group: int | None) -> str:
    """A readable name for a group code point (hex when unknown)."""
    if group is None:
        return "none"
    return GROUP_NAMES.get(group, f"0x{group:04x}")


@dataclass(frozen=True)
class ClientHello:
    """What a ClientHello offers: every group it supports, and those it sent a share for."""

    supported_groups: tuple[int, ...]
    key_shares: tuple[tuple[int, int], ...]  # (group, share length), in the client's order


@dataclass(frozen=True)
class ServerHello:
    """What a ServerHello (or HelloRetryRequest) picked."""

    version: int  # the negotiated version: supported_versions if present, else legacy_version
    group: int | None  # the key_share group (the group asked for, in a HelloRetryRequest)
    share_len: int  # length of the server's key share (0 in a HelloRetryRequest)
    hello_retry: bool


@dataclass(frozen=True)
class Handshake:
    """The clear-text hellos of one connection, in wire order."""

    client_hellos: tuple[ClientHello, ...]
    server_hellos: tuple[ServerHello, ...]

    @property
    def group(self) -> int | None:
        """The group the key exchange used: the last real ServerHello's, if any."""
        final = [s for s in self.server_hellos if not s.hello_retry]
        return final[-1].group if final else None

    @property
    def retried(self) -> bool:
        """Whether the server sent a HelloRetryRequest (the client's first share was unusable)."""
        return any(s.hello_retry for s in self.server_hellos)

    def describe(self) -> str:
        offered = [group_name(g) for g, _ in self.client_hellos[0].key_shares] if self else []
        return (
            f"negotiated {group_name(self.group)}"
            f"{' after a HelloRetryRequest' if self.retried else ''}; client key shares {offered}"
        )

    def __bool__(self) -> bool:
        return bool(self.client_hellos)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TlsParseError(f"truncated: need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, len_size: int) -> bytes:
        return self.take(self.uint(len_size))

    def done(self) -> bool:
        return self.pos == len(self.data)

    def end(self, what: str) -> None:
        if not self.done():
            raise TlsParseError(f"{len(self.data) - self.pos} stray bytes after {what}")


def handshake_messages(stream: bytes) -> list[tuple[int, bytes]]:
    """The clear-text handshake messages at the start of one direction of a TLS stream.

    Reads records until the first that is neither handshake nor change_cipher_spec (in TLS 1.3
    everything after the hellos is encrypted application_data records); a record or message cut
    off by the end of ``stream`` is dropped, since a capture may stop anywhere.
    """
    payload = bytearray()
    reader = _Reader(stream)
    while len(stream) - reader.pos >= 5:
        content_type = reader.uint(1)
        reader.uint(2)  # legacy record version
        length = reader.uint(2)
        if len(stream) - reader.pos < length:
            break
        fragment = reader.take(length)
        if content_type == _CHANGE_CIPHER_SPEC:
            continue
        if content_type != _HANDSHAKE:
            break
        payload += fragment
    messages = []
    reader = _Reader(bytes(payload))
    while len(payload) - reader.pos >= 4:
        msg_type = reader.uint(1)
        length = reader.uint(3)
        if len(payload) - reader.pos < length:
            break
        messages.append((msg_type, reader.take(length)))
    return messages


def _extensions(reader: _Reader) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    block = _Reader(reader.vector(2))
    while not block.done():
        ext_type = block.uint(2)
        data = block.vector(2)
        if ext_type in found:
            raise TlsParseError(f"extension {ext_type} appears twice")
        found[ext_type] = data
    reader.end("the extensions")
    return found


def parse_client_hello(body: bytes) -> ClientHello:
    """The groups offered by a ClientHello message body."""
    reader = _Reader(body)
    reader.take(2 + 32)  # legacy_version, random
    reader.vector(1)  # legacy_session_id
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    extensions = _extensions(reader)
    groups: list[int] = []
    if _EXT_SUPPORTED_GROUPS in extensions:
        outer = _Reader(extensions[_EXT_SUPPORTED_GROUPS])
        inner = _Reader(outer.vector(2))
        outer.end("supported_groups")
        while not inner.done():
            groups.append(inner.uint(2))
    shares: list[tuple[int, int]] = []
    if _EXT_KEY_SHARE in extensions:
        outer = _Reader(extensions[_EXT_KEY_SHARE])
        inner = _Reader(outer.vector(2))
        outer.end("key_share")
        while not inner.done():
            group = inner.uint(2)
            shares.append((group, len(inner.vector(2))))
    return ClientHello(tuple(groups), tuple(shares))


def parse_server_hello(body: bytes) -> ServerHello:
    """The version and group chosen by a ServerHello (or HelloRetryRequest) message body."""
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    hello_retry = reader.take(32) == HRR_RANDOM
    reader.vector(1)  # legacy_session_id_echo
    reader.uint(2)  # cipher_suite
    reader.uint(1)  # legacy_compression_method
    extensions = _extensions(reader) if not reader.done() else {}
    version = legacy_version
    if _EXT_SUPPORTED_VERSIONS in extensions:
        versions = _Reader(extensions[_EXT_SUPPORTED_VERSIONS])
        version = versions.uint(2)
        versions.end("supported_versions")
    group: int | None = None
    share_len = 0
    if _EXT_KEY_SHARE in extensions:
        share = _Reader(extensions[_EXT_KEY_SHARE])
        group = share.uint(2)
        if not hello_retry:
            share_len = len(share.vector(2))
        share.end("key_share")
    return ServerHello(version, group, share_len, hello_retry)


def parse_handshake(client_stream: bytes, server_stream: bytes) -> Handshake:
    """The hellos of one connection from its client->server and server->client bytes."""
    client = tuple(
        parse_client_hello(body)
        for kind, body in handshake_messages(client_stream)
        if kind == _CLIENT_HELLO
    )
    server = tuple(
        parse_server_hello(body)
        for kind, body in handshake_messages(server_stream)
        if kind == _SERVER_HELLO
    )
    return Handshake(client, server)
