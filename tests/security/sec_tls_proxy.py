"""A TLS-terminating, recording TCP proxy: what a load balancer or an ingress sees.

It accepts TLS with its own certificate (the one the manifest then pins, as an operator
publishing a load balancer's certificate would), opens its own TLS connection to the real
node (verifying the node's certificate), forwards every byte both ways and keeps a copy of
the decrypted stream (HTTP/2 frames carrying the gRPC messages) in each direction.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

from pakr.node.tls import write_certificate


class RecordingProxy:
    """One proxy in front of one node; ``start()``/``stop()``, then read :attr:`recorded`."""

    def __init__(
        self,
        upstream: str,
        upstream_cert: Path | None,
        workdir: Path,
        *,
        alpn: tuple[str, ...] = ("h2",),
    ) -> None:
        """``upstream_cert`` None: plaintext to the upstream (a proxy in front of a loopback
        listener, as in front of a node's web listener); ``alpn``: what it offers clients."""
        self.upstream_host, _, port = upstream.rpartition(":")
        self.upstream_port = int(port)
        self.cert = workdir / "proxy.crt"
        key = workdir / "proxy.key"
        write_certificate(self.cert, key, "recording proxy", ["127.0.0.1", "localhost"])
        self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ctx.load_cert_chain(self.cert, key)
        self._server_ctx.set_alpn_protocols(list(alpn))
        self._client_ctx: ssl.SSLContext | None = None
        if upstream_cert is not None:
            self._client_ctx = ssl.create_default_context(cafile=str(upstream_cert))
            self._client_ctx.check_hostname = False  # pinned by the CA file: the node's cert
            self._client_ctx.set_alpn_protocols(["h2"])
        self.to_node = bytearray()
        self.to_client = bytearray()
        self.connections = 0
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def recorded(self) -> bytes:
        """Everything the proxy saw in the clear, both directions."""
        return bytes(self.to_node) + bytes(self.to_client)

    def start(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self._server_ctx
        )
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host,
                self.upstream_port,
                ssl=self._client_ctx,
                server_hostname="localhost" if self._client_ctx is not None else None,
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, self.to_node),
            self._pipe(up_reader, writer, self.to_client),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
    ) -> None:
        try:
            while data := await reader.read(65536):
                record.extend(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
